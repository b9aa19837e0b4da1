"""The contract every chip system meets: :class:`ChipSystem`, and the typed :class:`ChipSpec`.

A chip system (a diffractive stack, an MZI mesh, a lab rig) is one adapter in
:data:`pipeline.chips.CHIPS`. The adapter is the only place that knows what kind of chip it
drives: how its geometry and hardware spec are made from typed config values, how its
simulated chip and digital twin are built, how inputs are encoded, where its phases start,
which topologies can split it, and how its phases are drawn. Everything outside
:mod:`pipeline.chips` asks the adapter and never compares chip kinds.

A system that drives hardware outside Ray (a rig) answers a few more questions, each
optional (a simulated system has none, and the helpers at the end give the answer for it):
the custom Ray resources each chip actor needs (:func:`resources_of`), the rig a chip spec
drives (:func:`bind_rig`), what the driver brings up and checks around the run
(:func:`attach_of`), the named actor that holds a chip's hardware exclusively
(:func:`claim_of`), and which of the chip's errors are hardware faults that the fault path
re-runs like a crashed chip (:func:`faults_of`).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from optics.core.activations import ACTIVATIONS, Activation
from optics.core.data import Split
from optics.core.measurement import MeasurementSpec
from optics.core.validate import check_choice, check_positive


class PhaseLayout(enum.StrEnum):
    """How a chip's phases are drawn: one image per modulation plane, or one (columns, modes) image."""

    PLANES = "planes"  # (layers, n, n): one panel per layer
    COLUMNS = "columns"  # (columns, modes): one panel, shifter columns along x


class InitialPhases(enum.StrEnum):
    PI = "pi"  # all at pi: mid-range, away from an SLM's phase wrap
    UNIFORM = "uniform"  # uniform in [0, 2 pi): away from a mesh's bar/cross states


class Inputs(enum.StrEnum):
    IMAGES = "images"  # the chip takes images (encoded as fields)
    FEATURES = "features"  # the chip takes feature vectors (images are reduced first)


class ChipKnobs(Protocol):
    """The chip keys an adapter reads (``pipeline.config.ChipConfig`` has them all)."""

    kind: str
    geometry: str
    n_modes: int | None
    arrangement: str
    n: int | None
    n_layers: int | None
    distance: float | None
    pad: int | None
    only: str | None
    options: dict
    activation: str  # none | saturable_phase | kerr (optics.core.activations.ACTIVATIONS)
    activation_intensity: float  # its intensity scale, in units of a unit-power field's mean intensity


@dataclass(frozen=True)
class Design:
    """What an adapter makes from the chip keys: the geometry, the class of its hardware knobs,
    and the knob values that ``chip.only`` sets before the user's (hardware, then camera)."""

    geometry: Any
    hardware_class: type
    hardware_base: dict
    camera_base: dict


class RigKnobs(Protocol):
    """The rig keys a rig adapter reads (``pipeline.config.RigConfig`` has them all)."""

    address: str | None
    hardware: Any  # role -> name on the server (field_amplitude, field_phase, design_phase, camera, ...)
    scheme: str
    camera_oversample: int
    averaging: int
    drift_every_batches: int
    error_exposure_boost: float
    frame_retries: int
    frame_timeout_s: float
    frame_rate_hz: float
    settle_s: float | None
    connect_timeout_s: float
    emulator: Any  # the emulated rig's knobs (pipeline.config.RigEmulatorConfig)


@dataclass(frozen=True)
class RigSpec:
    """The physical rig one chip drives (typed; made by a rig adapter, no config objects)."""

    address: str | None  # HOST:PORT of its slmsuite server (None: an emulated rig the driver starts)
    roles: Any  # optics.rig.chip.RigRoles: the server's name for each role
    settings: Any  # optics.rig.chip.RigSettings: how the rig is driven
    settle_s: float | None = None  # after each SLM write (None: each SLM's own settle time)
    connect_timeout_s: float = 5.0
    emulator: dict | None = None  # optics.rig.emulator.EmulatorSpec fields of an emulated rig (None: a real one)


@dataclass(frozen=True)
class Claim:
    """A chip's exclusive hold on its hardware: a named Ray actor, and the line a second claim gets."""

    name: str  # the actor's name in :data:`CLAIMS_NAMESPACE` (e.g. rig@127.0.0.1:5025)
    refusal: str  # one line: what is held, by whom, and what to do


CLAIMS_NAMESPACE = "ffm-optics-hardware"  # one namespace for every run on a cluster: names are unique in it


@dataclass(frozen=True)
class ChipSpec:
    """Everything a worker needs to build its chip (typed; no config objects)."""

    index: int
    seed: int
    geometry: Any  # the chip system's geometry (optics.diffractive.geometry.Geometry, optics.mesh.layout.MeshGeometry)
    hardware: Any  # its hardware knobs (HardwareSpec, MeshErrors)
    measurement: MeasurementSpec
    backend: str = "numpy"
    precision: str = "complex64"
    fft_threads: int | None = None
    fft_planner: str = "measure"
    classes: tuple | None = None  # width topology: this chip's sub-task (these classes + "other")
    calibrate_registration: bool = False  # measure and correct the chip's registration at start
    samples_per_pass: int | None = None  # memory-lean: at most this many samples per pass (None: the shard)
    kind: str | None = None  # the chip system (None: the one whose geometry this is)
    rig: RigSpec | None = None  # the physical rig this chip drives (None: a simulated chip)
    activation: Activation | None = None  # between measured layers (systems with ``activations``); None: none


class ChipSystem(Protocol):
    """One chip system's adapter (stateless; one instance in the registry).

    A system that drives hardware may also have ``resources`` (dict), ``bind_rig(spec, knobs)``,
    ``attach(specs)``, ``claim(spec)`` and ``faults`` (a tuple of exception types); they are
    read only through the helpers at the end of this module."""

    kind: str
    geometry_type: type  # the class of its geometry (a ChipSpec without a kind is matched on it)
    inputs: Inputs
    init: InitialPhases
    layout: PhaseLayout
    topologies: tuple[str, ...]  # topology kinds that can run it
    calibrates_registration: bool  # chip.calibrate_registration applies

    def design(self, knobs: ChipKnobs, n_classes: int, n_features: int) -> Design:
        """Geometry and hardware knobs from the chip keys; ValueError names the key on bad values."""

    def max_stages(self, knobs: ChipKnobs) -> int:
        """How many layer-pipeline stages the configured chip can be cut into."""

    def prepare_split(self, split: Split, n_features: int, method: str) -> Split:
        """The task's split as this chip takes it (feature chips: reduced to ``n_features``)."""

    def make_chips(self, spec: ChipSpec, backend: Callable[[], Any], relay_input: bool = False) -> tuple:
        """The simulated chip and its digital twin (``backend()`` makes a fresh backend each)."""

    def calibrate(self, chip, twin):
        """Measure the chip's registration against the twin and correct it (calibrating systems only)."""

    def encode(self, geometry, images: np.ndarray) -> np.ndarray:
        """Input fields (or mode amplitudes) from a batch of images or feature vectors."""

    def detector_regions(self, chip) -> np.ndarray | None:
        """(n, n) class-region image of a camera, or None (detectors that are not a picture)."""

    def preflight(self, spec: ChipSpec, batch: int, memory_bytes: float | None) -> list[str]:
        """Checks computed in the driver before any actor exists (a free-space chip: its
        propagation grid, padding and memory for ``batch`` samples); returns warning lines;
        ValueError (one line naming the key and the fix) on a chip that cannot run."""

    def detector_pixels(self, geometry) -> int | None:
        """Camera pixels of all class detectors of one chip (photon reports), or None (no camera)."""

    def topology_error(self, topology: str) -> str | None:
        """Why ``topology`` cannot run this chip (one line), or None."""


def unsupported_topology(system: ChipSystem, topology: str) -> str | None:
    """The usual refusal of a topology the system does not list."""
    if topology in system.topologies:
        return None
    return f"topology={topology} cannot run chip={system.kind}; use topology={' or '.join(system.topologies)}"


def no_options(kind: str, options: dict) -> None:
    """Systems without per-kind options refuse any (a typo would be silently ignored otherwise)."""
    if options:
        raise ValueError(f"chip.options: chip={kind} takes no options, got {sorted(options)}")


def takes_activation(system: ChipSystem) -> bool:
    """Whether the system's chips can apply ``chip.activation`` between measured layers
    (``system.activations``; a system without the attribute cannot)."""
    return bool(getattr(system, "activations", False))


def with_activation(system: ChipSystem, specs: tuple[ChipSpec, ...], knobs: ChipKnobs, topology: str) -> tuple:
    """``specs`` with ``chip.activation`` (its scale from units of the mean intensity ``1/n^2`` of a
    unit-power field to the field's own), or as they are for ``none``. ValueError (one line naming
    the key) where there are no measured layers to act between: a system without ``activations``,
    the monitors measurement model, or a layer pipeline's relay between chips."""
    kind = check_choice("chip.activation", knobs.activation, ACTIVATIONS)
    scale = check_positive("chip.activation_intensity", knobs.activation_intensity)
    if kind == "none":
        return specs
    if not takes_activation(system):
        raise ValueError(
            f"chip.activation={kind} needs measured layers to act between, which chip={system.kind} has not; "
            "use chip=diffractive with chip.measurement.model=reload, or chip=rig_sim"
        )
    model = specs[0].measurement.model
    if model != "reload":
        raise ValueError(
            f"chip.activation={kind} needs measured layers to act between; chip.measurement.model={model} has "
            "none (light goes from layer to layer): set chip.measurement.model=reload"
        )
    if topology == "pipeline":
        raise ValueError(
            f"chip.activation={kind} acts inside one chip; topology=pipeline relays fields between chips "
            "without it: use topology=single, data_parallel or width"
        )
    return tuple(replace(s, activation=Activation(kind, scale / s.geometry.n**2)) for s in specs)


# -- the optional answers of systems that drive hardware (a simulated system has none) ------------


def resources_of(system: ChipSystem, requested: dict) -> dict[str, float]:
    """The custom Ray resources of one chip actor: ``requested`` (``chip.resources``), raised to at
    least what the system needs (``system.resources``, e.g. a rig's ``{optical_chip: 1}``)."""
    out = {name: float(v) for name, v in requested.items()}
    for name, need in dict(getattr(system, "resources", {})).items():
        out[name] = max(out.get(name, 0.0), float(need))
    return out


def drives_rig(system: ChipSystem) -> bool:
    """Whether the system's chips drive a physical rig (it reads the ``rig.*`` keys)."""
    return callable(getattr(system, "bind_rig", None))


def bind_rig(system: ChipSystem, spec: ChipSpec, knobs: RigKnobs) -> ChipSpec:
    """``spec`` with the rig it drives (``system.bind_rig``); a simulated chip's spec unchanged."""
    return system.bind_rig(spec, knobs) if drives_rig(system) else spec


def attach_of(system: ChipSystem, specs: tuple[ChipSpec, ...]) -> AbstractContextManager[tuple[ChipSpec, ...]]:
    """``system.attach(specs)``: in the driver, before any actor, bring up the hardware the chips
    need (an emulated rig per chip) and check it (one line, no frame taken); yields the specs
    bound to it and stops what it started on exit. A simulated system: the specs as they are."""
    attach = getattr(system, "attach", None)
    return attach(specs) if attach is not None else contextlib.nullcontext(specs)


def claim_of(system: ChipSystem, spec: ChipSpec) -> Claim | None:
    """The named actor that holds ``spec``'s hardware exclusively in the cluster (None: nothing to hold)."""
    claim = getattr(system, "claim", None)
    return claim(spec) if claim is not None else None


def faults_of(system: ChipSystem) -> tuple[type[BaseException], ...]:
    """The chip's errors that are hardware faults (a frame that never came): the fault path
    re-runs the call like a crashed chip's, and the failure policy applies."""
    return tuple(getattr(system, "faults", ()))


def with_address(spec: ChipSpec, address: str) -> ChipSpec:
    """``spec`` bound to the rig server at ``address``."""
    return replace(spec, rig=replace(spec.rig, address=address))


def twin_of(system: ChipSystem, spec: ChipSpec, backend: Callable[[], Any]):
    """The digital twin of ``spec`` alone (the logged model's inference): ``system.make_twin``
    where building the chip needs hardware (a rig), else the twin ``make_chips`` builds."""
    make_twin = getattr(system, "make_twin", None)
    return make_twin(spec, backend) if make_twin is not None else system.make_chips(spec, backend)[1]
