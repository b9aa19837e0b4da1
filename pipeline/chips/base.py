"""The contract every chip system meets: :class:`ChipSystem`, and the typed :class:`ChipSpec`.

A chip system (a diffractive stack, an MZI mesh, later a lab rig) is one adapter in
:data:`pipeline.chips.CHIPS`. The adapter is the only place that knows what kind of chip it
drives: how its geometry and hardware spec are made from typed config values, how its
simulated chip and digital twin are built, how inputs are encoded, where its phases start,
which topologies can split it, and how its phases are drawn. Everything outside
:mod:`pipeline.chips` asks the adapter and never compares chip kinds.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from optics.core.data import Split
from optics.core.measurement import MeasurementSpec


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


@dataclass(frozen=True)
class Design:
    """What an adapter makes from the chip keys: the geometry, the class of its hardware knobs,
    and the knob values that ``chip.only`` sets before the user's (hardware, then camera)."""

    geometry: Any
    hardware_class: type
    hardware_base: dict
    camera_base: dict


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


class ChipSystem(Protocol):
    """One chip system's adapter (stateless; one instance in the registry)."""

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
