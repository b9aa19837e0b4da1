"""Relations between config keys, checked after every value is (:func:`check_relations`).

What a chip kind allows (its topologies, calibration, the inputs it takes, whether it drives
a rig) is asked of its adapter in :mod:`pipeline.chips`; nothing here compares chip kinds.
"""

from __future__ import annotations

import re

from pipeline import chips
from pipeline.chips.base import drives_rig
from pipeline.config.schema import (
    ChipConfig,
    ConfigError,
    DebugConfig,
    RigConfig,
    RunConfig,
    SweepConfig,
    TaskConfig,
    TrainerKind,
)

FEATURE_TASKS = {"iris": 4}  # tasks whose samples are feature vectors (their feature count), not images
ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})")  # HOST:PORT (an IPv6 host in brackets)


def check_relations(cfg: RunConfig) -> None:
    _check_topology(cfg)
    _check_task(cfg.task, cfg.chip)
    calibrating = chips.calibrating_kinds()
    if cfg.chip.calibrate_registration and (cfg.chip.kind not in calibrating or cfg.topology.kind == "pipeline"):
        raise ConfigError(
            f"chip.calibrate_registration needs chip={' or chip='.join(calibrating)} and a topology other than pipeline"
        )
    if cfg.chip.samples_per_pass is not None and cfg.topology.kind == "pipeline":
        raise ConfigError("chip.samples_per_pass does not apply to topology=pipeline; set topology.microbatches")
    if cfg.cluster.kind == "address" and not cfg.cluster.address:
        raise ConfigError("cluster.address must be set for cluster=address (e.g. cluster.address=ray://head:10001)")
    if cfg.trainer.masks_from and cfg.trainer.kind != "insilico":
        raise ConfigError("trainer.masks_from deploys trained masks: use it with trainer=insilico")
    if cfg.trainer.kind == TrainerKind.PAT and cfg.topology.kind == "pipeline":
        raise ConfigError(
            "trainer.kind=pat runs each chip's backward pass through its twin from the chip's own output; "
            "use it with topology=single, data_parallel or width, not pipeline"
        )
    _check_per_sample(cfg)
    _check_sweep(cfg.sweep)
    if cfg.search.name and (cfg.sweep.name or cfg.study.kind):
        other = f"sweep.name={cfg.sweep.name}" if cfg.sweep.name else f"study.kind={cfg.study.kind}"
        raise ConfigError(
            f"search.name={cfg.search.name} and {other} in one command: a search runs trainings of its own; "
            "run the search and the sweep (or -m) as separate commands"
        )
    _check_rig(cfg)
    for name in ("focusing", "exceptional_point", "nlos"):
        _check_seeds(f"study.{name}.seeds", getattr(cfg.study, name).seeds)
    if cfg.topology.kind == "pipeline" and cfg.cluster.on_chip_failure == "drop":
        raise ConfigError(
            "cluster.on_chip_failure=drop cannot apply to topology=pipeline: every stage holds "
            "layers of the network; use on_chip_failure=fail (a failed round is re-run on every stage)"
        )
    d = cfg.debug
    if (d.crash_chip is None) != (d.crash_round is None):
        missing = "debug.crash_round" if d.crash_round is None else "debug.crash_chip"
        raise ConfigError(f"debug.crash_chip and debug.crash_round must be set together; set {missing} too")
    crash_points(d)


def _check_topology(cfg: RunConfig) -> None:
    top = cfg.topology
    if top.kind == "single" and top.n_chips != 1:
        raise ConfigError(f"topology.n_chips must be 1 for topology=single, got {top.n_chips}")
    if len(top.chip_seeds) < top.n_chips:
        raise ConfigError(
            f"topology.chip_seeds has {len(top.chip_seeds)} seeds for {top.n_chips} chips; give one seed per chip"
        )
    _check_seeds("topology.chip_seeds", top.chip_seeds)
    if cfg.trainer.batch_size < top.n_chips:
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} is smaller than topology.n_chips="
            f"{top.n_chips}; every chip needs at least one sample per round"
        )
    system = chips.system(cfg.chip.kind)
    refused = system.topology_error(top.kind)
    if refused:
        raise ConfigError(refused)
    if top.kind == "pipeline":
        layers = system.max_stages(cfg.chip)
        if top.n_chips > layers:
            raise ConfigError(
                f"topology.n_chips={top.n_chips} pipeline stages exceed the chip's {layers} layers; "
                f"use topology.n_chips <= {layers} or raise chip.n_layers"
            )


def _check_seeds(key: str, seeds: list) -> None:
    """Seeds are non-negative integers (NumPy refuses others)."""
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{key} must list integers >= 0, got {s!r} in {list(seeds)!r}")


def _check_per_class(task: TaskConfig) -> None:
    """task.per_class: [train, eval] positive counts, for an image task."""
    pc = task.per_class
    if pc is None:
        return
    if task.name in FEATURE_TASKS:
        raise ConfigError(f"task.per_class applies to image tasks (idx, digits), not task={task.name}; remove it")
    if len(pc) != 2 or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in pc):
        raise ConfigError(f"task.per_class must be [train, eval], two positive integers (e.g. [1000, 10]), got {pc!r}")


def _check_per_sample(cfg: RunConfig) -> None:
    """trainer.per_sample_grad_max rescales each sample's whole-network layer gradients: one chip holds
    every layer (not topology=pipeline) and a sample is one field per layer (an image chip)."""
    if cfg.trainer.per_sample_grad_max is None:
        return
    if cfg.topology.kind == "pipeline":
        raise ConfigError(
            "trainer.per_sample_grad_max does not apply to topology=pipeline; use topology=single or data_parallel"
        )
    if cfg.chip.kind in chips.feature_kinds():
        raise ConfigError(
            f"trainer.per_sample_grad_max applies to image chips, not chip={cfg.chip.kind} (a sample's taps "
            "are not one field per layer); set trainer.per_sample_grad_max=null"
        )


def _check_task(task: TaskConfig, chip: ChipConfig) -> None:
    for key in ("val_fraction", "test_fraction"):
        value = getattr(task, key)
        if not 0 < value < 1:
            raise ConfigError(f"task.{key} must be a fraction in (0, 1), got {value!r}")
    if task.name != "idx" and task.val_fraction + task.test_fraction >= 1:
        raise ConfigError(
            f"task.val_fraction + task.test_fraction must be < 1 (some samples must train), got "
            f"{task.val_fraction} + {task.test_fraction}"
        )
    takes_features = chips.feature_kinds()
    if task.name in FEATURE_TASKS and chip.kind not in takes_features:
        raise ConfigError(
            f"task={task.name} has {FEATURE_TASKS[task.name]} features, not images: use it with "
            f"chip={' or chip='.join(takes_features)}"
        )
    if task.name == "idx" and not task.data_dir:
        raise ConfigError("task.data_dir must name a folder of IDX files for task=idx")
    _check_per_class(task)


def n_features(task: TaskConfig) -> int:
    """Features per sample a feature-vector chip takes: a feature task's own, else task.features."""
    return FEATURE_TASKS.get(task.name, task.features)


def crash_points(d: DebugConfig) -> tuple[tuple[int, str, int], ...]:
    """``debug.crash_points`` (and crash_chip/crash_round) as (chip, call, round) triples."""
    points = [] if d.crash_chip is None else [(d.crash_chip, "round", d.crash_round)]
    for text in d.crash_points:
        parts = str(text).split(":")
        if (
            len(parts) != 3
            or parts[1] not in ("round", "val", "test")
            or not all(p.isdigit() for p in (parts[0], parts[2]))
        ):
            raise ConfigError(
                f"debug.crash_points entry {text!r} must be 'chip:call:round' with call "
                "round, val or test (e.g. '0:val:6')"
            )
        points.append((int(parts[0]), parts[1], int(parts[2])))
    return tuple(points)


def _check_sweep(sw: SweepConfig) -> None:
    trainer_kinds = tuple(TrainerKind)
    if sw.name is None:
        return
    if not sw.seeds or not sw.trainers:
        raise ConfigError(f"sweep {sw.name}: sweep.seeds and sweep.trainers must be non-empty lists")
    _check_seeds("sweep.seeds", sw.seeds)
    if sw.resume not in ("auto", "never") and not re.fullmatch(r"[0-9a-f]{32}", sw.resume):
        raise ConfigError(f"sweep.resume must be auto, never or a parent run id (32 hex digits), got {sw.resume!r}")
    bad = sorted(set(sw.trainers) - set(trainer_kinds))
    if bad:
        raise ConfigError(f"sweep.trainers has unknown trainer {bad[0]!r}; use {', '.join(trainer_kinds)}")
    for key, values in sw.axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.axes.{key} must be a non-empty list of values, got {values!r}")


def _check_rig(cfg: RunConfig) -> None:
    """``rig.*``: a HOST:PORT address, one chip per real rig, emulated rigs on a local cluster."""
    rig = cfg.rig
    found = ADDRESS.fullmatch(rig.address) if rig.address is not None else None
    if rig.address is not None and (not found or not 1 <= int(found.group(1)) <= 65535):
        raise ConfigError(
            f"rig.address must be HOST:PORT (e.g. 127.0.0.1:5025, where ffm-rig serve listens), got {rig.address!r}"
        )
    for frame in rig.emulator.fault_frames:
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise ConfigError(f"rig.emulator.fault_frames must list frame indices >= 0, got {frame!r}")
    if not drives_rig(chips.system(cfg.chip.kind)):
        if rig.address is not None:
            kinds = [k for k, a in chips.CHIPS.items() if drives_rig(a)]
            raise ConfigError(
                f"rig.address applies to a chip that drives a rig (chip={' or chip='.join(kinds)}); "
                f"chip={cfg.chip.kind} is simulated: drop rig.address"
            )
        return
    _check_rig_chips(cfg, rig)


def _check_rig_chips(cfg: RunConfig, rig: RigConfig) -> None:
    if rig.address is not None and cfg.topology.n_chips != 1:
        raise ConfigError(
            f"rig.address={rig.address} is one rig but topology.n_chips={cfg.topology.n_chips} chips would each "
            "claim it; use topology=single, or rig.address=null for one emulated rig per chip"
        )
    if rig.address is None and cfg.cluster.kind != "local" and not _on_loopback(cfg.cluster.address):
        raise ConfigError(
            "rig.address=null starts emulated rigs on this machine's 127.0.0.1, which chip actors on "
            f"cluster={cfg.cluster.kind} cannot reach; use cluster=local, or serve the rig on the chip host "
            "(ffm-rig serve --emulated) and set rig.address=HOST:PORT"
        )


def _on_loopback(address: str | None) -> bool:
    """A Ray cluster address on this machine's loopback (its nodes can reach 127.0.0.1 here)."""
    host = (address or "").removeprefix("ray://").rpartition(":")[0]
    return host.startswith("127.") or host == "localhost"
