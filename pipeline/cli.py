"""``ffm-train``: the Hydra app over ``conf/`` (thin: compose, then :func:`pipeline.train`).

Every error ends in one line on stderr, ``ffm-train: error: <what>; <the fix>``, with exit
code 2, and a run rejected before it started leaves nothing behind (no output folder, no
Hydra folder, no MLflow run). Ctrl-C checkpoints, prints the command that resumes the run
and exits with 130. Keys under the free-form mappings conf/ leaves empty (chip.hardware,
chip.resources, sweep.axes, ...) are set without Hydra's ``+`` (``chip.hardware.slm_bits=6``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
import typing

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.config import TYPED_ROOT, RunConfig, register_resolvers, register_schemas

register_resolvers()
register_schemas()  # compose TYPED_ROOT: conf/config.yaml merged into the dataclasses (types checked)

_HERE = os.path.dirname(os.path.abspath(__file__))
# an installed wheel carries conf/ inside the package; a source checkout has it at the top level
CONFIG_DIR = next(p for p in (os.path.join(_HERE, "conf"), os.path.join(_HERE, "..", "conf")) if os.path.isdir(p))
_STARTED = time.time()
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def fail(message: str) -> None:
    """The one line every error ends in, then exit code 2."""
    print(f"ffm-train: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(EXIT_ERROR)


def error_line(exc: BaseException) -> str:
    """One line for any error: known errors carry their fix; others name their type."""
    from pipeline.errors import explain

    return explain(exc)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=TYPED_ROOT)
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hydra_dir = HydraConfig.get().runtime.output_dir
    if cfg.get("output_dir") is None:
        OmegaConf.set_struct(cfg, False)
        cfg.output_dir = hydra_dir
    try:
        _dispatch(cfg)
    except KeyboardInterrupt as exc:
        _discard_if_empty(hydra_dir)
        print(_interrupted_line(exc, HydraConfig.get().overrides.task), file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except BaseException as exc:
        _discard_if_empty(hydra_dir)
        if os.environ.get("FFM_TRACEBACK"):
            raise
        fail(error_line(exc))


def _dispatch(cfg: DictConfig) -> None:
    from pipeline.config import load_config

    run_cfg = load_config(cfg)  # a bad value: one line before Ray, MLflow or the chips are even imported
    run_cfg = _with_command(run_cfg)
    if run_cfg.study.kind:
        from pipeline.studies.runner import run_study

        run_study(run_cfg)
        return
    if run_cfg.search.name:
        from pipeline.search.runner import run_search

        result = run_search(run_cfg, _promoted(run_cfg))
        sys.exit(0 if any(r["status"] == "finished" for r in result["rows"]) else 1)
    if run_cfg.sweep.name:
        from pipeline.sweeps.grid import run_sweep

        result = run_sweep(run_cfg)
        sys.exit(1 if result["failed"] else 0)
    from pipeline.run.preflight import check_inputs

    check_inputs(run_cfg)  # IDX folder, a resume run id's store, what a local cluster holds
    from pipeline.run.driver import train

    train(run_cfg)


def _with_command(run_cfg):
    """The config with the command line that started it (``tracking.command``: the run description)."""
    from hydra.core.hydra_config import HydraConfig

    if run_cfg.tracking.command:
        return run_cfg
    command = " ".join(["ffm-train", *HydraConfig.get().overrides.task])
    return dataclasses.replace(run_cfg, tracking=dataclasses.replace(run_cfg.tracking, command=command))


def _promoted(run_cfg):
    """The search's configuration on ``search.promote_chip`` (``chip=rig``), composed here at the
    root like the search's own; None without promotion (``search.top_k=0``)."""
    if not run_cfg.search.top_k:
        return None
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from pipeline.config import load_config

    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("chip=")]
    return _with_command(
        load_config(compose(TYPED_ROOT, overrides=[*overrides, f"chip={run_cfg.search.promote_chip}"]))
    )


def _interrupted_line(exc: KeyboardInterrupt, overrides) -> str:
    if getattr(exc, "rerun", None):  # a sweep or a search
        return f"ffm-train: {exc.rerun}"
    resume = getattr(exc, "resume", None)
    if resume is None:
        return "ffm-train: interrupted before training started; nothing to resume"
    kept = [o for o in overrides if not o.startswith(("resume=", "debug.interrupt_round="))]
    command = " ".join(["ffm-train", *kept, f"resume={resume}"])
    return f"ffm-train: interrupted at round {exc.round_index}; checkpoint saved. Resume with: {command}"


def _discard_if_empty(path: str) -> None:
    """Remove a run folder Hydra made for this process if it holds only Hydra's own files."""
    if not path or not os.path.isdir(path) or os.path.getctime(path) < _STARTED - 1:
        return
    hydra_own = {".hydra"} | {f for f in os.listdir(path) if f.endswith(".log")}
    if set(os.listdir(path)) - hydra_own:
        return
    shutil.rmtree(path, ignore_errors=True)
    parent = os.path.dirname(os.path.abspath(path))
    try:  # <paths.root>/runs/<date>/ made for this run, runs/ and the root itself, if now empty
        for _ in range(3):
            if os.listdir(parent) or os.path.getctime(parent) < _STARTED - 1:
                break
            os.rmdir(parent)
            parent = os.path.dirname(parent)
    except OSError:
        pass


def _precheck(args: list[str]) -> None:
    """Compose plain overrides once before Hydra does, so a bad override, config group or a value of
    the wrong type (OmegaConf's multi-line error) is one line: ``<key>: <what>``."""
    if not args or any(a.startswith("-") for a in args):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _parse_each(args)
    try:
        with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base="1.3"):
            compose(TYPED_ROOT, overrides=args)
    except (HydraException, OmegaConfBaseException, ValueError, KeyError) as exc:
        fail(error_line(exc))


def _parse_each(args: list[str]) -> None:
    """An override Hydra cannot parse: one line naming it (Hydra's own message names only the input)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in args:
        try:
            parser.parse_override(arg)
        except HydraException as exc:
            fail(
                f"cannot parse the override {arg!r} ({str(exc).splitlines()[0]}); write key=value with a "
                "complete value (a list [a,b], a mapping {k:v}) and quote the whole override for the shell "
                "('key=[1,2]'); see https://hydra.cc/docs/advanced/override_grammar/basic/"
            )


def free_overrides(args: list[str]) -> list[str]:
    """``key=value`` under a free-form mapping conf/ leaves empty (chip.hardware, chip.resources,
    sweep.axes, ...) adds the key, as ``++key=value`` would: Hydra would refuse it as not in the config."""
    free = tuple(free_mappings())
    out = []
    for arg in args:
        key = arg.split("=", 1)[0]
        if (
            "=" in arg
            and not arg.startswith(("+", "~", "-"))
            and any(key == f or key.startswith(f + ".") for f in free)
        ):
            arg = "++" + arg
        out.append(arg)
    return out


def free_mappings(cls=None, prefix: str = "") -> list[str]:
    """Dotted keys of the free-form mappings (``dict`` fields: chip.hardware, sweep.axes, ...)."""
    cls = cls or RunConfig
    out: list[str] = []
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            out += free_mappings(hint, f"{prefix}{name}.")
        elif hint is dict:
            out.append(prefix + name)
    return out


def _as_sweep(args: list[str]) -> list[str]:
    """``-m`` command lines become grid sweeps run in parallel (:mod:`pipeline.sweeps.multirun`)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.sweeps.multirun import MultirunError, multirun_overrides

    def composed(overrides: list[str]):
        with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base="1.3"):
            return compose(TYPED_ROOT, overrides=free_overrides(overrides))

    _parse_each([a for a in args if not a.startswith("-")])
    try:
        return multirun_overrides(args, CONFIG_DIR, composed)
    except (MultirunError, HydraException, OmegaConfBaseException, ValueError, KeyError) as exc:
        fail(error_line(exc))


def main() -> None:
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")  # no INFO lines from ray.init around our one line
    from pipeline.tracking.console import quiet_store_logs

    quiet_store_logs()
    from pipeline.sweeps.multirun import is_multirun

    if is_multirun(sys.argv[1:]):
        sys.argv[1:] = _as_sweep(sys.argv[1:])
    sys.argv[1:] = free_overrides(sys.argv[1:])
    _precheck(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
