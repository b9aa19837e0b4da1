"""The composition root: the only place that reads the configuration and builds objects."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from optics.core import measurement as optics_measurement
from optics.core.data import Split, load_digits_split, load_idx, load_iris_split
from optics.core.ffm import Objective
from optics.core.measurement import MeasurementSpec, check_spec_names
from optics.core.optim import OptimizerSpec
from pipeline import chips as registry
from pipeline.chips import ChipSystem, InitialPhases, PhaseLayout
from pipeline.chips.base import CLAIMS_NAMESPACE, attach_of, bind_rig, claim_of, resources_of, with_activation
from pipeline.config import ConfigError, Loss, RunConfig, TopologyKind, TrainerKind, crash_points, n_features
from pipeline.run.actors import ChipSpec, ChipWorker, FaultPlan
from pipeline.run.coordinator import SHARED, GroupId, Target, group_of, stage_group
from pipeline.run.layer_pipeline import stage_layers
from pipeline.run.rounds import FailurePolicy
from pipeline.run.trainers import DEPLOY_ON, TRAIN_ON
from pipeline.tracking import tracker as tags
from pipeline.tracking.tracker import MlflowTracker, NullTracker

SPOOL_DIR = "tracking-spool"  # <output_dir>/tracking-spool: tracking calls not yet on the server


@dataclass(frozen=True)
class Plan:
    """Typed pieces of a run, derived from the config before anything starts."""

    geometry: object  # the chip system's geometry
    chips: tuple[ChipSpec, ...]
    objective: Objective
    optimizer: OptimizerSpec
    policy: FailurePolicy
    fault: FaultPlan
    init: InitialPhases  # the chip system's: 'pi' (diffractive: off the SLM wrap) | 'uniform' (mzi: off bar/cross)
    trainer: TrainerKind
    topology: TopologyKind
    shared: bool
    groups: dict[GroupId, tuple]  # parameter group -> its phase shape
    layout: PhaseLayout  # how figures draw the phases (the chip system's)
    notes: tuple = ()  # warnings for the console (marginal padding)

    @property
    def train_on(self) -> Target:
        """Where rounds run: the chip (ffm, pat: its data pass) or the twin (insilico, ideal)."""
        return TRAIN_ON[self.trainer]

    @property
    def deploy_on(self) -> Target:
        """Where the trained phases are tested: the chip (ffm, pat, insilico) or the twin (ideal)."""
        return DEPLOY_ON[self.trainer]


def _checked(section: str, make):
    try:
        return make()
    except ValueError as exc:
        raise ConfigError(f"{section}: {exc}") from None


def make_plan(cfg: RunConfig, n_classes: int, n_train: int | None = None) -> Plan:
    """Build and check every typed spec, and each chip's propagation grid, padding and memory
    (:mod:`pipeline.run.preflight`); raises ConfigError naming the key on bad values."""
    from pipeline.run.preflight import check_backend, check_chips, memory_of_this_machine

    plan = _plan(cfg, n_classes)
    t = cfg.trainer
    if n_train is not None and t.batch_size > n_train:
        raise ConfigError(
            f"trainer.batch_size={t.batch_size} exceeds the {n_train} training samples of "
            f"task={cfg.task.name}; use trainer.batch_size <= {n_train}"
        )
    local = cfg.cluster.kind == "local"
    check_backend(cfg.chip.backend, local)
    per_chip = -(-t.batch_size // cfg.topology.n_chips) if plan.topology != TopologyKind.WIDTH else t.batch_size
    notes = check_chips(plan.chips, per_chip, memory_of_this_machine() if local else None)
    return dataclasses.replace(plan, notes=tuple(notes))


def _plan(cfg: RunConfig, n_classes: int) -> Plan:
    c, t = cfg.chip, cfg.trainer
    system = chip_system(cfg)
    design = _config_error(lambda: system.design(c, n_classes, n_features(cfg.task)))
    geometry, hardware = design.geometry, _hardware(cfg, design)
    measurement = _checked(
        "chip.measurement", lambda: MeasurementSpec(**({"level": c.level} | design.camera_base | c.measurement))
    )
    chips = tuple(
        ChipSpec(
            i,
            int(cfg.topology.chip_seeds[i]),
            geometry,
            hardware,
            measurement,
            c.backend,
            c.precision,
            c.fft_threads or max(1, int(c.num_cpus)),
            c.fft_planner,
            calibrate_registration=c.calibrate_registration,
            samples_per_pass=c.samples_per_pass,
            kind=system.kind,
        )
        for i in range(cfg.topology.n_chips)
    )
    topology, trainer = TopologyKind(cfg.topology.kind), TrainerKind(t.kind)
    if topology == TopologyKind.WIDTH:
        chips = _subtasks(chips, geometry, n_classes)
    chips = tuple(_config_error(lambda s=s: bind_rig(system, s, cfg.rig)) for s in chips)  # messages name rig.*
    chips = _config_error(lambda: with_activation(system, chips, c, topology.value))  # messages name chip.activation
    return Plan(
        geometry,
        chips,
        _checked("trainer", lambda: Objective(Loss(t.loss).value, t.temperature, t.per_sample_grad_max)),
        _checked("trainer", lambda: OptimizerSpec(t.optimizer, t.lr, momentum=t.momentum)),
        make_plan_policy(cfg),
        _fault_plan(cfg),
        system.init,
        trainer,
        topology,
        cfg.topology.shared_phases,
        _groups(cfg, geometry),
        system.layout,
    )


def chip_system(cfg: RunConfig) -> ChipSystem:
    """The adapter of ``chip.kind`` (:mod:`pipeline.chips`)."""
    return _config_error(lambda: registry.system(cfg.chip.kind))


def _config_error(make):
    """``make()``; a ValueError (whose message already names the key) as a ConfigError."""
    try:
        return make()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _hardware(cfg: RunConfig, design):
    """The chip's hardware knobs: level, then what ``chip.only`` sets, then ``chip.hardware``."""
    c = cfg.chip
    _checked("chip.hardware", lambda: check_spec_names(design.hardware_class, c.hardware))
    _checked("chip.measurement", lambda: check_spec_names(MeasurementSpec, c.measurement))
    return _checked(
        "chip.hardware", lambda: design.hardware_class(**({"level": c.level} | design.hardware_base | c.hardware))
    )


def make_plan_policy(cfg: RunConfig, strict: bool = False) -> FailurePolicy:
    """The fault path's policy from ``cluster.*`` (strict: a chip that stays dead fails the call)."""
    cl = cfg.cluster
    return FailurePolicy(cl.round_timeout_s, cl.round_retries, "fail" if strict else cl.on_chip_failure)


def _fault_plan(cfg: RunConfig) -> FaultPlan:
    """Fault injection (tests): crash points, remembered in the output folder once fired."""
    points = crash_points(cfg.debug)
    marker_dir = os.path.abspath(os.path.join(cfg.output_dir or ".", ".faults")) if points else None
    return FaultPlan(points, marker_dir)


def _subtasks(chips: tuple, g, n_classes: int) -> tuple:
    """Width topology: split the classes into one group per chip; each chip detects its
    group plus one "other" detector."""
    if len(chips) > n_classes:
        raise ConfigError(f"topology.n_chips={len(chips)} exceeds the {n_classes} classes for topology=width")
    groups = np.array_split(np.arange(n_classes), len(chips))
    return tuple(
        dataclasses.replace(
            spec,
            classes=tuple(int(c) for c in grp),
            geometry=_checked("chip", lambda grp=grp: dataclasses.replace(g, n_classes=len(grp) + 1)),
        )
        for spec, grp in zip(chips, groups)
    )


def _groups(cfg: RunConfig, g) -> dict[GroupId, tuple]:
    """Parameter groups: one shared mask set, one per chip, or one per pipeline stage."""
    top = cfg.topology
    if top.kind == TopologyKind.PIPELINE:
        sizes = _checked("topology.n_chips", lambda: stage_layers(g.n_layers, top.n_chips))
        return {stage_group(k): dataclasses.replace(g, n_layers=size).phase_shape for k, size in enumerate(sizes)}
    if top.shared_phases and top.kind != TopologyKind.WIDTH:
        return {SHARED: g.phase_shape}
    return {group_of(i, False): g.phase_shape for i in range(top.n_chips)}


def load_split(cfg: RunConfig) -> Split:
    """The task's split as the chip system takes it (a feature chip: standardised iris, PCA of images)."""
    task = t = cfg.task
    if task.name == "iris":
        split = load_iris_split(task.split_seed, task.val_fraction, task.test_fraction)
    elif task.name == "idx":
        split = _checked("task.data_dir", lambda: load_idx(t.data_dir, t.split_seed, t.val_fraction, t.per_class))
    else:
        split = _checked("task", lambda: load_digits_split(t.split_seed, t.val_fraction, t.test_fraction, t.per_class))
    method = "standardise" if task.name == "iris" else "pca"
    return _config_error(lambda: chip_system(cfg).prepare_split(split, n_features(task), method))


@contextlib.contextmanager
def attach_hardware(plan: Plan) -> Iterator[Plan]:
    """The plan with its chips bound to their hardware, for the ``with`` block: the chip system
    brings up what the chips drive outside Ray (an emulated rig per chip), checks it from the
    driver before any actor (one line, ConfigError) and stops what it started on exit."""
    system = registry.system_of(plan.chips[0])
    with contextlib.ExitStack() as stack:
        try:
            chips = stack.enter_context(attach_of(system, plan.chips))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        yield dataclasses.replace(plan, chips=chips)


def start_ray(cfg: RunConfig) -> None:
    """Connect to (or start) the Ray cluster; a running session is reused (tests, notebooks).
    A local cluster listens on loopback only, with token auth (:mod:`pipeline.run.ray_cluster`),
    and advertises the custom resources the chips bring (a rig chip: one ``optical_chip`` each)."""
    from pipeline.run.preflight import local_resources
    from pipeline.run.ray_cluster import connect, start_local

    cl = cfg.cluster
    if cl.kind == "address":
        connect(cl.address)
    else:
        start_local(cl.num_cpus, cl.include_dashboard, local_resources(cfg))


def check_cluster(cfg: RunConfig) -> None:
    """The chips' CPUs, GPUs and custom resources against the running cluster (before any actor)."""
    import ray

    from pipeline.run.preflight import check_resources

    if not cfg.cluster.check_resources:
        return
    c = cfg.chip
    custom = resources_of(chip_system(cfg), c.resources)
    check_resources(cfg.topology.n_chips, c.num_cpus, c.num_gpus, custom, ray.cluster_resources())


class HardwareHeld(ValueError):
    """A chip's hardware is held by another run (its named actor exists): one line, exit code 2."""


def make_workers(plan: Plan, cfg: RunConfig, split_ref) -> list:
    """One ChipWorker actor per chip, with the chip's resources and restart budget. A chip that
    drives hardware is the named actor that holds it (:func:`pipeline.chips.base.claim_of`): a
    second claim is refused (:class:`HardwareHeld`) and the actors made so far are stopped."""
    import ray

    from pipeline.run.rounds import stop_actors

    remote = ray.remote(ChipWorker)
    workers: list = []
    try:
        for spec in plan.chips:
            workers.append(_make_worker(remote, spec, plan, cfg, split_ref))
    except BaseException:
        stop_actors(workers)
        raise
    return workers


def _make_worker(remote, spec: ChipSpec, plan: Plan, cfg: RunConfig, split_ref):
    from ray.exceptions import ActorAlreadyExistsError

    c, system = cfg.chip, registry.system_of(spec)
    claim = claim_of(system, spec)
    named = {"name": claim.name, "namespace": CLAIMS_NAMESPACE} if claim else {"name": None}
    options = remote.options(
        num_cpus=c.num_cpus,
        num_gpus=c.num_gpus,
        resources=resources_of(system, c.resources) or None,
        max_restarts=cfg.cluster.max_restarts,
        max_task_retries=0,
        **named,
    )
    try:
        return options.remote(spec, split_ref, plan.objective, plan.fault)
    except (ActorAlreadyExistsError, ValueError) as exc:
        if claim is None or "already" not in str(exc):
            raise
        raise HardwareHeld(claim.refusal) from None


def make_tracker(cfg: RunConfig):
    """The run's tracker; MLflow calls go through an on-disk spool in the output folder (a resume
    from a checkpoint path reuses the interrupted run's spool, so its leftovers drain first)."""
    t = cfg.tracking
    if t.kind != "mlflow":
        return NullTracker()
    spool = os.path.join(cfg.output_dir, SPOOL_DIR) if cfg.output_dir else None
    if cfg.resume and os.path.isfile(cfg.resume):
        previous = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(cfg.resume))), SPOOL_DIR)
        spool = previous if os.path.isdir(previous) else spool
    name = t.run_name or run_label(cfg)
    uri = t.uri or tags.default_uri(cfg.paths.root)
    return MlflowTracker(uri, t.experiment, name, spool, t.flush_timeout_s, t.system_metrics_s)


def run_label(cfg: RunConfig) -> str:
    """A run name a researcher recognises in a list: trainer, chip, task, topology, level, seed
    (``ffm diffractive/small digits single x1 level=1 seed=0``)."""
    c, top = cfg.chip, cfg.topology
    chip = c.kind + (f"/{c.geometry}" if c.kind in ("diffractive", "rig") else "")
    return f"{cfg.trainer.kind} {chip} {cfg.task.name} {top.kind} x{top.n_chips} level={c.level:g} seed={cfg.seed}"


def flat_params(cfg: RunConfig) -> dict[str, str]:
    """The resolved config as dotted keys (MLflow params)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif value is not None and value != [] and value != {}:  # unset keys: not shown in the UI
            out[prefix] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)

    walk("", dataclasses.asdict(cfg))
    return out


def fingerprint(cfg: RunConfig) -> str:
    """Hash of what determines the trained phases (not tracking, cluster, debug or paths), with the
    noise-stream version the chips draw camera noise with."""
    d = dataclasses.asdict(cfg)
    for volatile in ("tracking", "cluster", "debug", "resume", "output_dir", "checkpoint_every", "paths"):
        d.pop(volatile)
    d["noise_streams"] = optics_measurement.NOISE_STREAM_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def run_description(cfg: RunConfig, results: str = "") -> str:
    """The run's description in the UI (markdown): at the end of the run its ``results`` first
    (the final test accuracy per chip: what the run page shows before "Show more"), then the
    command that started it and what it trains."""
    lines = [f"**{run_label(cfg)}**", ""] + ([results, ""] if results else [])
    if cfg.tracking.command:  # inline code: the UI wraps it (a code block scrolls the page sideways)
        lines += [f"`{cfg.tracking.command}`", ""]
    c = cfg.chip
    lines.append(
        f"{cfg.trainer.kind} training, {cfg.topology.n_chips} x {c.kind} chip ({c.geometry}), imperfection level "
        f"{c.level:g}, task {cfg.task.name}, {cfg.trainer.epochs} epoch(s) of batch {cfg.trainer.batch_size}."
    )
    return "\n".join(lines)


def run_tags(cfg: RunConfig) -> dict[str, str]:
    from importlib.metadata import version

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=os.path.dirname(os.path.abspath(__file__)),
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    nest = {tags.PARENT_TAG: cfg.tracking.parent_run_id} if cfg.tracking.parent_run_id else {}
    return {
        **cfg.tracking.tags,
        **nest,
        tags.SOURCE_COMMIT_TAG: commit,
        tags.SOURCE_NAME_TAG: "ffm-train",
        tags.DESCRIPTION_TAG: run_description(cfg),
        "backend": cfg.chip.backend,
        "chips": str(cfg.topology.n_chips),
        "trainer": cfg.trainer.kind,
        "chip": cfg.chip.kind,
        "geometry": cfg.chip.geometry,
        "task": cfg.task.name,
        "topology": cfg.topology.kind,
        "level": f"{cfg.chip.level:g}",
        "seed": str(cfg.seed),
        "numpy": np.__version__,
        "ray": version("ray"),
        "mlflow": version("mlflow"),
        "ffm-optics": version("ffm-optics"),
        "noise_streams": str(optics_measurement.NOISE_STREAM_VERSION),
    }
