"""The diffractive chip system: a stack of phase masks (SLMs) imaged onto a camera."""

from __future__ import annotations

import numpy as np

from optics.core.data import Split, encode_amplitude
from optics.diffractive.calibration import calibrate_registration
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec
from pipeline.chips.base import ChipSpec, Design, InitialPhases, Inputs, PhaseLayout, no_options, unsupported_topology
from pipeline.chips.diffractive_grid import check_grid

GEOMETRIES = {"reference": Geometry.reference, "small": Geometry.small, "xue2024": Geometry.xue2024}
# chip.only=<group>: keep this group of imperfection knobs at its level-1 value, zero the rest
IMPERFECTION_GROUPS = {
    "distance": ("distance_error_m",),
    "phase_screen": ("phase_screen_rad",),
    "slm": ("slm_gamma_spread", "slm_bits"),  # gamma curve and 8-bit quantisation
    "crosstalk": ("crosstalk_sigma_px",),
    "illumination": ("illumination_falloff", "illumination_ripple"),
    "registration": ("registration_shift_px", "registration_tilt_rad"),
    "detector": (),  # camera noise only (MeasurementSpec)
}
_KNOBS = tuple(k for group in IMPERFECTION_GROUPS.values() for k in group)
_QUIET_CAMERA = {"photons_per_sample": float("inf"), "read_noise_e": 0.0, "adc_bits": 0, "reference_phase_rad": 0.0}


def only(group: str | None) -> tuple[dict, dict]:
    """Knob overrides for ``chip.only``: every other imperfection group off."""
    if group is None:
        return {}, {}
    if group not in IMPERFECTION_GROUPS:
        raise ValueError(f"chip.only must be one of {', '.join(IMPERFECTION_GROUPS)} (or null), got {group!r}")
    hardware = {k: 0 for k in _KNOBS if k not in IMPERFECTION_GROUPS[group]}
    return hardware, ({} if group == "detector" else dict(_QUIET_CAMERA))


class Diffractive:
    kind = "diffractive"
    geometry_type = Geometry
    inputs = Inputs.IMAGES
    init = InitialPhases.PI
    layout = PhaseLayout.PLANES
    topologies = ("single", "data_parallel", "pipeline", "width")
    calibrates_registration = True
    activations = True  # chip.activation between measured layers (the reload measurement model)
    resources: dict = {}  # no custom Ray resources beyond chip.resources
    faults: tuple = ()  # no hardware faults: every error is the chip's own

    def _geometry(self, knobs, n_classes: int) -> Geometry:
        keys = ("n", "n_layers", "distance", "pad", "detector_layout")
        overrides = {k: getattr(knobs, k) for k in keys if getattr(knobs, k) is not None}
        try:
            return GEOMETRIES[knobs.geometry](n_classes=n_classes, **overrides)
        except ValueError as exc:
            raise ValueError(f"chip: {exc}") from None

    def design(self, knobs, n_classes: int, n_features: int) -> Design:
        no_options(self.kind, knobs.options)
        hardware, camera = only(knobs.only)
        return Design(self._geometry(knobs, n_classes), HardwareSpec, hardware, camera)

    def max_stages(self, knobs) -> int:
        return knobs.n_layers or GEOMETRIES[knobs.geometry]().n_layers

    def prepare_split(self, split: Split, n_features: int, method: str) -> Split:
        return split

    def make_chips(self, spec, backend, relay_input: bool = False) -> tuple:
        g, act = spec.geometry, spec.activation
        return (
            SimulatedChip(
                g, spec.hardware, spec.measurement, spec.seed, backend(), relay_input=relay_input, activation=act
            ),
            DigitalTwin(g, backend(), relay_input=relay_input, activation=act),
        )

    def calibrate(self, chip, twin):
        return calibrate_registration(chip, twin)

    def encode(self, geometry: Geometry, images: np.ndarray) -> np.ndarray:
        return encode_amplitude(images, geometry.n, geometry.object_px)

    def detector_regions(self, chip) -> np.ndarray | None:
        return chip.detectors.region_image()

    def preflight(self, spec: ChipSpec, batch: int, memory_bytes: float | None) -> list[str]:
        return check_grid(spec, batch, memory_bytes)

    def detector_pixels(self, geometry) -> int | None:
        return geometry.n_classes * geometry.detector_px**2

    def topology_error(self, topology: str) -> str | None:
        return unsupported_topology(self, topology)
