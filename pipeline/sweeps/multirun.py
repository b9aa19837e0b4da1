"""``ffm-train -m key=a,b ...``: Hydra's multirun syntax, run by the parallel sweep runner.

Hydra's own ``-m`` would run the jobs one after another, each a flat MLflow run with no report.
:func:`multirun_overrides` turns the command line into a grid sweep instead
(:mod:`pipeline.sweeps.grid`: one parent run, jobs in parallel on Ray, resumable, a report):

- ``seed=1,2,3`` (or ``range(1,4)``) becomes ``sweep.seeds``;
- ``trainer=ffm,insilico`` (the trainer group, or ``trainer.kind``) becomes ``sweep.trainers``;
- any other swept key, ``trainer.lr=0.05,0.1`` or ``chip.level=choice(0,1,2)``, becomes an axis
  of ``sweep.axes``;
- what is not swept stays as it is; seeds and trainers default to the run's own
  (``seed``, ``trainer``) unless an ``experiment=`` sets them; the sweep is named ``multirun``
  unless ``sweep.name`` is given.

Sweeping any other config group (``chip=a,b``) is refused in one line: jobs of one sweep share
a chip system; run one command per group value, or sweep the group's keys.
"""

from __future__ import annotations

import os

MULTIRUN_FLAGS = ("-m", "--multirun")
SEED_KEYS, TRAINER_KEYS = ("seed",), ("trainer", "trainer.kind")


class MultirunError(ValueError):
    """A multirun command line the sweep runner cannot run."""


def is_multirun(args: list[str]) -> bool:
    return any(a in MULTIRUN_FLAGS for a in args)


def multirun_overrides(args: list[str], config_dir: str, compose) -> list[str]:
    """The overrides of the equivalent grid sweep (module docstring). ``compose(overrides)``
    returns the composed config of the plain overrides (to read what an experiment sets)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = {d for d in os.listdir(config_dir) if os.path.isdir(os.path.join(config_dir, d))}
    plain, axes, seeds, trainers = [], {}, None, None
    for o in OverridesParser.create().parse_overrides([a for a in args if a not in MULTIRUN_FLAGS]):
        if not o.is_sweep_override():
            plain.append(o.input_line)
            continue
        key, values = o.key_or_group, list(o.sweep_string_iterator())
        if key in SEED_KEYS:
            seeds = values
        elif key in TRAINER_KEYS:
            trainers = values
        elif key in groups:
            raise MultirunError(
                f"-m over the config group {key} ({o.input_line}) is not supported: the jobs of one sweep "
                f"share a chip system; run one command per {key}, or sweep its keys ({key}.<key>=a,b)"
            )
        else:
            axes[key] = values
    cfg = compose(plain)
    out = list(plain)
    if not cfg.sweep.name:
        out.append("sweep.name=multirun")
    if seeds is not None or not cfg.sweep.seeds:
        out.append(f"sweep.seeds=[{','.join(seeds or [str(cfg.seed)])}]")
    if trainers is not None or not cfg.sweep.trainers:
        out.append(f"sweep.trainers=[{','.join(trainers or [str(cfg.trainer.kind)])}]")
    if axes:
        out.append("sweep.axes={" + ",".join(f"{k}:[{','.join(v)}]" for k, v in axes.items()) + "}")
    return out
