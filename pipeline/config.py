"""Structured configuration: typed dataclasses, checked before Ray starts.

``conf/`` (Hydra) composes a plain mapping; :func:`load_config` turns it into a
:class:`RunConfig`, checking every key, type and range. A bad value gets one line naming
the key and what is allowed (``trainer.lr must be a finite number > 0, got -1``). Only the
composition root (:mod:`pipeline.run.build`) reads the config; everything below it takes
these typed objects.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass
class ChipConfig:
    kind: str = "diffractive"  # diffractive | mzi
    geometry: str = "reference"  # diffractive: reference | small
    n_modes: int | None = None  # mzi: modes (None: the task's features + 1 reference mode)
    arrangement: str = "double"  # mzi: double (reflective, M = A^T R A, FFM-exact) | single
    n: int | None = None  # overrides of the named geometry
    n_layers: int | None = None
    distance: float | None = None
    pad: int | None = None
    level: float = 1.0  # scales every imperfection and the noise
    hardware: dict = field(default_factory=dict)  # HardwareSpec knobs (each scaled by level)
    measurement: dict = field(default_factory=dict)  # MeasurementSpec knobs
    backend: str = "numpy"
    precision: str = "complex64"
    fft_threads: int | None = None
    fft_planner: str = "measure"  # measure (fast; plans shared via a wisdom file) | estimate
    samples_per_pass: int | None = None  # memory-lean: at most this many samples per chip pass
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: dict = field(default_factory=dict)  # custom Ray resources, e.g. {optical_chip: 1}
    calibrate_registration: bool = False  # measure and correct plane registration before training
    only: str | None = None  # keep one imperfection group (build.IMPERFECTION_GROUPS), zero the rest


@dataclass
class TaskConfig:
    name: str = "digits"  # digits | idx | iris
    features: int = 15  # mzi chips: PCA components of an image task (iris: its 4)
    data_dir: str | None = None  # folder of MNIST-format IDX files (task=idx)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0


@dataclass
class TrainerConfig:
    kind: str = "ffm"  # ffm | insilico | ideal
    epochs: int = 4
    batch_size: int = 32  # global batch, split across chips
    eval_batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 0.1
    momentum: float = 0.0
    loss: str = "cross_entropy"
    temperature: float = 0.003
    train_amplitude: bool = False
    fidelity_every: int = 10  # rounds between gradient-fidelity checks (0: never)
    max_rounds: int | None = None  # stop early (debug and smoke runs)
    masks_from: str | None = None  # insilico: deploy these trained phases (phases.npz), no training


@dataclass
class TopologyConfig:
    kind: str = "data_parallel"  # single | data_parallel | pipeline | width
    n_chips: int = 2
    chip_seeds: list = field(default_factory=lambda: [1, 2])
    shared_phases: bool = True  # one mask set for every chip, or one per chip
    microbatches: int = 4  # pipeline: microbatches per round


@dataclass
class TrackingConfig:
    kind: str = "mlflow"  # mlflow | none
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else the local SQLite store
    experiment: str = "ffm-optics"
    run_name: str | None = None
    log_images: bool = True
    parent_run_id: str | None = None  # sweeps: the parent run this job's run nests under
    flush_timeout_s: float = 120.0  # at the end: wait this long for the spool to drain
    probe_timeout_s: float = 10.0  # before anything starts: is the tracking server there?
    tags: dict = field(default_factory=dict)  # extra run tags (sweeps: the job key)


@dataclass
class ClusterConfig:
    kind: str = "local"  # local | address
    address: str | None = None
    num_cpus: int | None = None  # local cluster size (None: all cores)
    include_dashboard: bool = False
    round_timeout_s: float = 600.0
    max_restarts: int = 3  # per chip actor
    round_retries: int = 3  # re-runs of a failed round before giving up on a chip
    on_chip_failure: str = "fail"  # fail | drop
    check_resources: bool = True  # refuse chips the cluster cannot place (off: autoscaling)


@dataclass
class DebugConfig:
    crash_chip: int | None = None  # fault injection: this chip's process exits ...
    crash_round: int | None = None  # ... at this round, once
    crash_points: list = field(default_factory=list)  # more crashes: "chip:call:round", call round|val|test
    interrupt_round: int | None = None  # simulate Ctrl-C before this round
    kill_round: int | None = None  # SIGKILL this driver before this round (a lost driver)


@dataclass
class SweepConfig:
    """A sweep of independent jobs (pipeline.sweeps.grid): one MLflow parent run, one child per job."""

    name: str | None = None  # None: not a sweep, one training run
    seeds: list = field(default_factory=list)  # each seed: shuffling seed and chip instance
    trainers: list = field(default_factory=list)  # ideal | insilico | ffm (insilico reuses ideal's masks)
    axes: dict = field(default_factory=dict)  # dotted config key -> list of values (a grid)
    max_parallel: int | None = None  # jobs at once (None: cluster CPUs / CPUs per job)
    resume: str = "auto"  # auto (same sweep, unfinished parent) | never | <parent run id>
    root: str = "outputs/sweeps"  # job folders: <root>/<parent run id>/<job>
    stop_after: int | None = None  # debug: stop after this many jobs (an interrupted sweep)


@dataclass
class FocusingConfig:
    """experiment=focusing: FFM vs model-free focusing through a scattering medium."""

    medium: dict = field(default_factory=dict)  # optics.scattering.medium.MediumSpec knobs
    targets: list = field(default_factory=lambda: [[32, 32]])  # camera pixels (row, col) to focus on
    seeds: list = field(default_factory=lambda: [1, 2, 3])  # one hidden medium per seed, one actor each
    loss: str = "log_intensity"
    ffm_steps: int = 40
    lr: float = 0.3
    sequential_cycles: int = 2
    phase_steps: int = 4
    pso_particles: int = 16
    pso_iterations: int = 150


@dataclass
class ExceptionalPointConfig:
    """experiment=exceptional_point: drive coupled resonators to an exceptional point."""

    gain: list = field(default_factory=lambda: [-0.25, -2.25])  # net gain per resonator, units of gamma0
    seeds: list = field(default_factory=lambda: [1, 2, 3])  # one hidden device per seed
    start: list = field(default_factory=lambda: [1.0, -1.0, 2.0])  # knobs w1..wN, k1..k(N-1)
    steps: int = 20
    lr: float = 0.5
    method: str = "gauss_newton"


@dataclass
class StudyConfig:
    """Non-classification studies run by :mod:`pipeline.studies.runner` instead of training rounds."""

    kind: str | None = None  # None | focusing | exceptional_point
    focusing: FocusingConfig = field(default_factory=FocusingConfig)
    exceptional_point: ExceptionalPointConfig = field(default_factory=ExceptionalPointConfig)


@dataclass
class RunConfig:
    chip: ChipConfig = field(default_factory=ChipConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    seed: int = 0
    checkpoint_every: int = 20
    resume: str | None = None  # checkpoint .npz or MLflow run id
    vars: dict = field(default_factory=dict)  # free values experiment files interpolate
    output_dir: str | None = None  # None: outputs/<date_time> (Hydra: its run folder)


CHOICES = {
    "chip.kind": ("diffractive", "mzi"),
    "chip.arrangement": ("double", "single"),
    "chip.geometry": ("reference", "small"),
    "chip.backend": ("numpy", "cupy"),
    "chip.precision": ("complex64", "complex128"),
    "chip.fft_planner": ("estimate", "measure"),
    "task.name": ("digits", "idx", "iris"),
    "trainer.kind": ("ffm", "insilico", "ideal"),
    "trainer.optimizer": ("adam", "sgd"),
    "trainer.loss": ("cross_entropy",),
    "topology.kind": ("single", "data_parallel", "pipeline", "width"),
    "tracking.kind": ("mlflow", "none"),
    "cluster.kind": ("local", "address"),
    "study.kind": ("focusing", "exceptional_point"),
    "cluster.on_chip_failure": ("fail", "drop"),
    "study.focusing.loss": (
        "intensity",
        "log_intensity",
        "fraction",
        "log_fraction",
    ),  # optics.scattering.medium.FOCUS_LOSSES
    "study.exceptional_point.method": ("gauss_newton", "adam", "sgd"),  # optics.resonators.exceptional.METHODS
}
POSITIVE = {
    "study.focusing.ffm_steps",
    "study.focusing.lr",
    "study.focusing.sequential_cycles",
    "study.focusing.pso_particles",
    "study.focusing.pso_iterations",
    "study.exceptional_point.lr",
    "study.exceptional_point.steps",
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.eval_batch_size",
    "trainer.lr",
    "trainer.temperature",
    "topology.n_chips",
    "topology.microbatches",
    "cluster.round_timeout_s",
    "checkpoint_every",
    "tracking.flush_timeout_s",
    "tracking.probe_timeout_s",
    "chip.n",
    "chip.n_layers",
    "chip.n_modes",
    "task.features",
    "chip.distance",
    "trainer.max_rounds",
    "chip.fft_threads",
    "chip.samples_per_pass",
    "cluster.num_cpus",
}
NONNEGATIVE = {
    "seed",
    "sweep.max_parallel",
    "sweep.stop_after",
    "chip.level",
    "chip.num_cpus",
    "chip.num_gpus",
    "trainer.momentum",
    "trainer.fidelity_every",
    "cluster.max_restarts",
    "cluster.round_retries",
    "chip.pad",
}


# values past these are not physical or not affordable on any machine: refused with the bound
UPPER = {
    "chip.level": (10.0, "imperfection levels are multiples of the realistic level 1; sweeps use 0-3"),
    "trainer.lr": (1e3, "a step of more than a few radians per round wraps the phases"),
    "trainer.batch_size": (1_000_000, "use a batch no larger than the training set"),
    "trainer.eval_batch_size": (1_000_000, "evaluation batches are cut to this size"),
    "chip.n": (8192, "an 8192 x 8192 grid is already 0.5 GiB per complex64 field"),
    "chip.n_layers": (64, "diffractive stacks beyond a few tens of layers lose the light"),
    "topology.n_chips": (4096, "more chips than a cluster can hold"),
    "cluster.round_retries": (100, "a chip that failed 100 times will not recover"),
}


def load_config(raw: Any) -> RunConfig:
    """A checked :class:`RunConfig` from a mapping (an OmegaConf container or plain dict)."""
    cfg = _build(RunConfig, _plain(raw), "")
    _check_relations(cfg)
    return cfg


def register_resolvers() -> None:
    """Arithmetic for sweeps (conf/experiment/scaling.yaml): ``${mul:a,b}`` and
    ``${share:cores,k}`` = min(1, cores / k), a chip's share of the cores."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mul", lambda a, b: a * b, replace=True)
    OmegaConf.register_new_resolver("share", lambda cores, k: min(1.0, cores / k), replace=True)


def _plain(raw):
    if hasattr(raw, "_metadata"):  # an OmegaConf node: resolve interpolations first
        from omegaconf import OmegaConf
        from omegaconf.errors import MissingMandatoryValue

        register_resolvers()
        try:
            return OmegaConf.to_container(raw, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            key = exc.full_key or "a key"
            raise ConfigError(
                f"{key} must be set (conf/ leaves it ???); add {key}=<value> to the command line"
            ) from None
    return raw


def _build(cls, values, prefix: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known - {"hydra"})
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]}; known keys: {', '.join(sorted(known))}")
    kwargs = {}
    for name in known & set(values):
        key, hint = prefix + name, hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, values[name], key + ".")
        else:
            kwargs[name] = _coerce(key, values[name], hint)
    return cls(**kwargs)


def _coerce(key: str, value, hint):
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = [a for a in typing.get_args(hint) if a is not type(None)][0] if optional else hint
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} must be set (got null)")
    origin = typing.get_origin(base) or base
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
        list: lambda v: isinstance(v, (list, tuple)),
    }[origin]
    if not ok(value):
        raise ConfigError(f"{key} must be of type {origin.__name__}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key} must be one of {', '.join(CHOICES[key])}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or (key in POSITIVE and value <= 0) or (key in NONNEGATIVE and value < 0):
            need = "> 0" if key in POSITIVE else ">= 0"
            raise ConfigError(f"{key} must be a finite number {need}, got {value!r}")
        if key in UPPER and value > UPPER[key][0]:
            bound, why = UPPER[key]
            raise ConfigError(f"{key} must be <= {bound:g}, got {value!r} ({why})")
    return float(value) if origin is float else (list(value) if origin is list else value)


def _check_relations(cfg: RunConfig) -> None:
    _check_topology(cfg)
    _check_task(cfg.task, cfg.chip)
    if cfg.chip.calibrate_registration and (cfg.chip.kind != "diffractive" or cfg.topology.kind == "pipeline"):
        raise ConfigError("chip.calibrate_registration needs chip=diffractive and a topology other than pipeline")
    if cfg.chip.samples_per_pass is not None and cfg.topology.kind == "pipeline":
        raise ConfigError("chip.samples_per_pass does not apply to topology=pipeline; set topology.microbatches")
    if cfg.cluster.kind == "address" and not cfg.cluster.address:
        raise ConfigError("cluster.address must be set for cluster=address (e.g. cluster.address=ray://head:10001)")
    if cfg.trainer.masks_from and cfg.trainer.kind != "insilico":
        raise ConfigError("trainer.masks_from deploys trained masks: use it with trainer=insilico")
    _check_sweep(cfg.sweep)
    for name in ("focusing", "exceptional_point"):
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
    if cfg.chip.kind == "mzi" and top.kind in ("pipeline", "width"):
        raise ConfigError(
            f"topology={top.kind} splits a diffractive chip; use topology=single or data_parallel with chip=mzi"
        )
    if top.kind == "pipeline":
        layers = cfg.chip.n_layers or _geometry_layers(cfg.chip.geometry)
        if top.n_chips > layers:
            raise ConfigError(
                f"topology.n_chips={top.n_chips} pipeline stages exceed the chip's {layers} layers; "
                f"use topology.n_chips <= {layers} or raise chip.n_layers"
            )


def _geometry_layers(name: str) -> int:
    from optics.diffractive.geometry import Geometry

    return getattr(Geometry, name)().n_layers


def _check_seeds(key: str, seeds: list) -> None:
    """Seeds are non-negative integers (NumPy refuses others)."""
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{key} must list integers >= 0, got {s!r} in {list(seeds)!r}")


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
    if task.name == "iris" and chip.kind != "mzi":
        raise ConfigError("task=iris has 4 features, not images: use it with chip=mzi")
    if task.name == "idx" and not task.data_dir:
        raise ConfigError("task.data_dir must name a folder of IDX files for task=idx")


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
    if sw.name is None:
        return
    if not sw.seeds or not sw.trainers:
        raise ConfigError(f"sweep {sw.name}: sweep.seeds and sweep.trainers must be non-empty lists")
    _check_seeds("sweep.seeds", sw.seeds)
    if sw.resume not in ("auto", "never") and not re.fullmatch(r"[0-9a-f]{32}", sw.resume):
        raise ConfigError(f"sweep.resume must be auto, never or a parent run id (32 hex digits), got {sw.resume!r}")
    bad = sorted(set(sw.trainers) - set(CHOICES["trainer.kind"]))
    if bad:
        raise ConfigError(f"sweep.trainers has unknown trainer {bad[0]!r}; use {', '.join(CHOICES['trainer.kind'])}")
    for key, values in sw.axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.axes.{key} must be a non-empty list of values, got {values!r}")
