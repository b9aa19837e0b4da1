"""Structured configuration: typed dataclasses, checked before Ray starts.

``conf/`` (Hydra) composes a plain mapping; :func:`load_config` turns it into a
:class:`RunConfig`, checking every key, type and range. A bad value gets one line naming
the key and what is allowed (``trainer.lr must be a finite number > 0, got -1``). Only the
composition root (:mod:`pipeline.run.build`) reads the config; everything below it takes
these typed objects. The dataclasses (:mod:`pipeline.config.schema`) are the defaults, and
:func:`register_schemas` gives them to Hydra so that ``ffm-train`` type-checks composition.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from optics.core.activations import ACTIVATIONS
from optics.core.optim import OPTIMIZERS
from optics.diffractive.geometry import DETECTOR_LAYOUTS
from optics.mesh.layout import ARRANGEMENTS
from optics.resonators.exceptional import METHODS
from optics.rig.holography import Scheme
from optics.scattering.focus import FOCUS_LOSSES
from pipeline import chips
from pipeline.chips.diffractive import GEOMETRIES
from pipeline.config.checks import check_relations, crash_points, n_features
from pipeline.config.schema import (
    ChipConfig,
    ClusterConfig,
    ConfigError,
    DebugConfig,
    ExceptionalPointConfig,
    FocusingConfig,
    Loss,
    RigConfig,
    RigEmulatorConfig,
    RigHardwareConfig,
    RunConfig,
    SearchConfig,
    StudyConfig,
    SweepConfig,
    TaskConfig,
    TopologyConfig,
    TopologyKind,
    TrackingConfig,
    TrainerConfig,
    TrainerKind,
)

SCHEMA = "ffm_schema"  # ConfigStore: RunConfig, the typed root every composition merges into
TYPED_ROOT = "ffm_train"  # ConfigStore: the primary config ffm-train composes (schema, then conf/config.yaml)

CHOICES = {
    "chip.kind": tuple(chips.CHIPS),
    "chip.arrangement": ARRANGEMENTS,
    "chip.geometry": tuple(GEOMETRIES),
    "chip.detector_layout": DETECTOR_LAYOUTS,
    "chip.backend": ("numpy", "cupy"),
    "chip.precision": ("complex64", "complex128"),
    "chip.fft_planner": ("estimate", "measure"),
    "chip.activation": ACTIVATIONS,
    "task.name": ("digits", "idx", "iris"),
    "trainer.kind": tuple(TrainerKind),
    "trainer.optimizer": OPTIMIZERS,
    "trainer.loss": tuple(Loss),
    "topology.kind": tuple(TopologyKind),
    "tracking.kind": ("mlflow", "none"),
    "cluster.kind": ("local", "address"),
    "study.kind": ("focusing", "exceptional_point", "nlos"),
    "study.nlos.precision": ("complex64", "complex128"),
    "cluster.on_chip_failure": ("fail", "drop"),
    "study.focusing.loss": FOCUS_LOSSES,
    "study.exceptional_point.method": METHODS,
    "rig.scheme": tuple(s.value for s in Scheme),
}
POSITIVE = {
    "study.focusing.ffm_steps",
    "study.focusing.lr",
    "study.focusing.sequential_cycles",
    "study.focusing.pso_particles",
    "study.focusing.pso_iterations",
    "study.exceptional_point.lr",
    "study.exceptional_point.steps",
    "study.nlos.ffm_steps",
    "study.nlos.lr",
    "study.nlos.record_every",
    "study.nlos.zernike_modes",
    "study.nlos.sa_step_rad",
    "study.nlos.ridge_repeats",
    "study.nlos.ridge_alpha",
    "study.nlos.test_scenes",
    "study.nlos.camera_fps",
    "study.nlos.fast_camera_fps",
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.eval_batch_size",
    "trainer.lr",
    "trainer.temperature",
    "trainer.per_sample_grad_max",
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
    "chip.activation_intensity",
    "cluster.num_cpus",
    "rig.averaging",
    "rig.camera_oversample",
    "rig.drift_every_batches",
    "rig.error_exposure_boost",
    "rig.frame_timeout_s",
    "rig.frame_rate_hz",
    "rig.connect_timeout_s",
    "rig.emulator.photons_per_px_s",
    "rig.emulator.exposure_s",
    "rig.emulator.pitch_m",
    "rig.emulator.camera_oversample",
    "search.trials",
    "search.max_concurrent",
    "search.grace_epochs",
    "search.kill_after_trials",
}
NONNEGATIVE = {
    "seed",
    "sweep.max_parallel",
    "sweep.stop_after",
    "search.seed",
    "search.time_budget_s",
    "search.top_k",
    "chip.level",
    "chip.num_cpus",
    "chip.num_gpus",
    "trainer.momentum",
    "trainer.fidelity_every",
    "cluster.max_restarts",
    "cluster.round_retries",
    "chip.pad",
    "rig.frame_retries",
    "rig.settle_s",
    "rig.emulator.seed",
    "rig.emulator.level",
    "rig.emulator.settle_s",
    "rig.emulator.drift_rad_per_frame",
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
    "rig.frame_retries": (100, "a frame that failed 100 times will not come"),
    "rig.averaging": (1000, "frames are averaged per phase step; 1000 is minutes per sample"),
    "rig.camera_oversample": (16, "a camera of 16 x the SLM's pixels per side is already beyond any rig"),
    "rig.emulator.level": (10.0, "imperfection levels are multiples of the realistic level 1"),
}


def load_config(raw: Any) -> RunConfig:
    """A checked :class:`RunConfig` from a mapping (an OmegaConf container or plain dict)."""
    cfg = _build(RunConfig, _plain(raw), "")
    check_relations(cfg)
    return cfg


def register_resolvers() -> None:
    """Arithmetic for sweeps (conf/experiment/scaling.yaml): ``${mul:a,b}`` and
    ``${share:cores,k}`` = min(1, cores / k), a chip's share of the cores."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mul", lambda a, b: a * b, replace=True)
    OmegaConf.register_new_resolver("share", lambda cores, k: min(1.0, cores / k), replace=True)


def register_schemas() -> None:
    """The dataclasses in Hydra's ConfigStore: :data:`SCHEMA` (the typed root) and :data:`TYPED_ROOT`,
    a primary config that merges ``conf/config.yaml`` into it (a wrong type fails composition)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name=SCHEMA, node=RunConfig)
    store.store(name=TYPED_ROOT, node={"defaults": [SCHEMA, "config", "_self_"]})


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
            raise ConfigError(f"{key} must be a finite number {need}, got {_shown(value)}")
        if key in UPPER and value > UPPER[key][0]:
            bound, why = UPPER[key]
            raise ConfigError(f"{key} must be <= {bound:g}, got {_shown(value)} ({why})")
    return float(value) if origin is float else (list(value) if origin is list else value)


def _shown(value) -> str:
    """A number as the user wrote it: the typed composition makes ``-1`` a float field's ``-1.0``."""
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 1e16
    return repr(int(value)) if whole else repr(value)


__all__ = [
    "CHOICES",
    "ChipConfig",
    "ClusterConfig",
    "ConfigError",
    "DebugConfig",
    "ExceptionalPointConfig",
    "FocusingConfig",
    "Loss",
    "RigConfig",
    "RigEmulatorConfig",
    "RigHardwareConfig",
    "RunConfig",
    "StudyConfig",
    "SearchConfig",
    "SweepConfig",
    "TaskConfig",
    "TopologyConfig",
    "TopologyKind",
    "TrackingConfig",
    "TrainerConfig",
    "TrainerKind",
    "crash_points",
    "load_config",
    "n_features",
    "register_resolvers",
    "register_schemas",
]
