"""The MZI-mesh chip system: an integrated Clements mesh with coherent mode receivers."""

from __future__ import annotations

import numpy as np

from optics.core.data import Split, encode_modes, reduce_features
from optics.mesh.layout import MeshErrors, MeshGeometry
from optics.mesh.mzi import MeshTwin, SimulatedMesh
from pipeline.chips.base import ChipSpec, Design, InitialPhases, Inputs, PhaseLayout, no_options


class Mesh:
    kind = "mzi"
    geometry_type = MeshGeometry
    inputs = Inputs.FEATURES
    init = InitialPhases.UNIFORM
    layout = PhaseLayout.COLUMNS
    topologies = ("single", "data_parallel")
    calibrates_registration = False
    resources: dict = {}  # no custom Ray resources beyond chip.resources
    faults: tuple = ()  # no hardware faults: every error is the chip's own

    def design(self, knobs, n_classes: int, n_features: int) -> Design:
        no_options(self.kind, knobs.options)
        if knobs.only is not None:
            raise ValueError(
                f"chip.only selects diffractive imperfection groups; for chip={self.kind} set chip.hardware knobs"
            )
        n_modes = knobs.n_modes or n_features + 1
        try:
            geometry = MeshGeometry(n_modes, n_classes, knobs.arrangement)
        except ValueError as exc:
            raise ValueError(f"chip: {exc}") from None
        return Design(geometry, MeshErrors, {}, {})

    def max_stages(self, knobs) -> int:
        return 1

    def prepare_split(self, split: Split, n_features: int, method: str) -> Split:
        try:
            return reduce_features(split, n_features, method)
        except ValueError as exc:
            raise ValueError(f"task: {exc}") from None

    def make_chips(self, spec, backend, relay_input: bool = False) -> tuple:
        if relay_input:
            raise ValueError(f"chip={self.kind} cannot be a later stage of a layer pipeline")
        g = spec.geometry
        chip = SimulatedMesh(
            g.n_modes,
            g.n_classes,
            seed=spec.seed,
            arrangement=g.arrangement,
            errors=spec.hardware,
            measurement=spec.measurement,
            backend=backend(),
        )
        return chip, MeshTwin(g.n_modes, g.n_classes, g.arrangement, backend())

    def calibrate(self, chip, twin):
        raise ValueError(f"chip={self.kind} has no registration to calibrate; set chip.calibrate_registration=false")

    def encode(self, geometry: MeshGeometry, images: np.ndarray) -> np.ndarray:
        return encode_modes(images, geometry.n_modes)  # feature vectors -> mode amplitudes

    def detector_regions(self, chip) -> np.ndarray | None:
        return None  # its detectors are modes, not a picture

    def preflight(self, spec: ChipSpec, batch: int, memory_bytes: float | None) -> list[str]:
        return []  # (N, N) matrices: nothing to size before the actors start

    def detector_pixels(self, geometry) -> int | None:
        return None  # coherent receivers on output modes, not camera pixels

    def topology_error(self, topology: str) -> str | None:
        if topology in self.topologies:
            return None
        return (
            f"topology={topology} splits a diffractive chip; use topology={' or '.join(self.topologies)} "
            f"with chip={self.kind}"
        )
