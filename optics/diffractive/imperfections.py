"""Hidden hardware imperfections of a simulated diffractive chip.

``HardwareSpec`` holds one knob per imperfection at its realistic level-1 value
(``docs/design.md`` section 3, sources beside each field) and a ``level`` that scales
them all together: amplitudes (rms errors, blur widths, shifts) scale linearly, the
phase quantisation step scales linearly (level 0: continuous phase, 1: 8 bit, 2: 7 bit).
Setting a knob to 0 turns that imperfection off. ``draw_hidden_state`` draws one chip
instance from its seed; training code never reads the result (the chip keeps it private
and reveals it only for post-hoc analysis).

Which imperfections keep FFM exact: distance errors, phase screens, SLM response,
illumination and a decentred mask are all diagonal or even-in-frequency, so every
propagation stays symmetric (``P = P^T``). Registration shifts and tilts of the frame
between planes make ``H`` non-even and break the symmetry FFM relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from optics.core.screens import correlated_screen
from optics.core.validate import check_nonnegative
from optics.diffractive.geometry import Geometry

TWO_PI = 2.0 * math.pi
SYMMETRY_BREAKING = ("registration_shift_px", "registration_tilt_rad")


@dataclass(frozen=True)
class HardwareSpec:
    """Imperfection knobs at level 1 (each scaled by ``level``)."""

    level: float = 1.0
    # mechanical mounting of each plane: 0.5 mm rms (docs/design.md section 3)
    distance_error_m: float = 0.5e-3
    # SLM/fabrication flatness after the vendor's correction: 0.3 rad rms, 5 px correlation
    phase_screen_rad: float = 0.3
    phase_screen_corr_px: float = 5.0
    # SLM phase response exponent 1 +/- 0.1 per chip (phase response curve)
    slm_gamma_spread: float = 0.1
    # 8-bit phase SLM (Meadowlark / Hamamatsu class; Taichi-II's phase SLM is 8 bit)
    slm_bits: int = 8
    # LCoS fringing-field crosstalk: Gaussian blur of the phase map, sigma 0.5 px
    crosstalk_sigma_px: float = 0.5
    # illumination: Gaussian envelope (amplitude falls by this fraction at the object edge)
    illumination_falloff: float = 0.2
    # ... plus 5 % rms amplitude ripple (speckle/dust), correlation length in px
    illumination_ripple: float = 0.05
    illumination_ripple_corr_px: float = 8.0
    # camera-to-SLM registration after calibration: 0.02 px rms per plane (symmetry-breaking)
    registration_shift_px: float = 0.02
    # plane tilt: 2.4 urad rms = 0.02 px walk-off over 0.3 m at 36 um (symmetry-breaking)
    registration_tilt_rad: float = 2.4e-6
    # lateral offset of each mask on its plane (diagonal: keeps symmetry); off by default
    mask_decentre_px: float = 0.0
    # one SLM, one camera and one hop serve every layer in turn (a measure-and-reload rig,
    # Xue et al. 2024): every layer sees the same screen, response and hop errors
    time_multiplexed: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            check_nonnegative(f.name, getattr(self, f.name))
        if int(self.slm_bits) != self.slm_bits or self.slm_bits > 16:
            raise ValueError(f"slm_bits must be an integer in 0..16 (0: continuous), got {self.slm_bits}")

    def symmetric_only(self) -> HardwareSpec:
        """The same spec with the symmetry-breaking imperfections (registration) turned off."""
        return replace(self, **{k: 0.0 for k in SYMMETRY_BREAKING})


@dataclass(frozen=True)
class HiddenState:
    """One chip's drawn imperfections (NumPy, float64). Shapes: L layers, L+1 gaps, n px."""

    distances: np.ndarray  # (L+1,) metres, actual plane spacing
    shifts_m: np.ndarray  # (L+1, 2) frame registration shift (y, x) per gap, metres
    tilts_rad: np.ndarray  # (L+1, 2) axis tilt (y, x) per gap, radians
    phase_screens: np.ndarray  # (L, n, n) radians added to every realised phase
    gamma: float  # SLM phase-response exponent
    quant_step: float  # phase quantisation step, radians (0: continuous)
    crosstalk_sigma_px: float
    mask_offsets_px: np.ndarray  # (L, 2) lateral mask offsets (y, x)
    illumination: np.ndarray  # (n, n) amplitude envelope of the input light

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (for an .npz artifact)."""
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


def draw_hidden_state(spec: HardwareSpec, geometry: Geometry, seed: int) -> HiddenState:
    """Draw one chip instance from ``seed`` (same seed, same chip).

    ``spec.time_multiplexed``: the draw of a one-layer chip, its layer and its second hop
    repeated for every layer, so a chip of any depth has the hop of the one-layer chip of
    the same seed (the rig an emulator serves, :mod:`optics.rig.emulator`)."""
    if spec.time_multiplexed:
        one = draw_hidden_state(replace(spec, time_multiplexed=False), replace(geometry, n_layers=1), seed)
        return _tiled(one, geometry.n_layers)
    rng = np.random.default_rng([int(seed), 0x0F1])
    lv, n, n_layers = spec.level, geometry.n, geometry.n_layers
    gaps = n_layers + 1
    distances = geometry.distance + lv * spec.distance_error_m * rng.standard_normal(gaps)
    if np.any(distances <= 0):
        raise ValueError("distance_error_m * level is so large that a plane spacing became <= 0; lower it")
    shifts = lv * spec.registration_shift_px * geometry.pitch * rng.standard_normal((gaps, 2))
    tilts = lv * spec.registration_tilt_rad * rng.standard_normal((gaps, 2))
    screens = np.stack(
        [correlated_screen(rng, (n, n), lv * spec.phase_screen_rad, spec.phase_screen_corr_px) for _ in range(n_layers)]
    )
    gamma = float(1.0 + lv * spec.slm_gamma_spread * rng.standard_normal())
    quant = lv * TWO_PI / 2**spec.slm_bits if spec.slm_bits > 0 else 0.0
    offsets = lv * spec.mask_decentre_px * rng.standard_normal((n_layers, 2))
    illum = illumination_envelope(
        rng, geometry, lv * spec.illumination_falloff, lv * spec.illumination_ripple, spec.illumination_ripple_corr_px
    )
    return HiddenState(
        distances, shifts, tilts, screens, max(gamma, 0.05), quant, lv * spec.crosstalk_sigma_px, offsets, illum
    )


def _tiled(one: HiddenState, n_layers: int) -> HiddenState:
    """A one-layer draw with its layer (and the hop after it) repeated ``n_layers`` times."""
    gaps = np.concatenate([[0], np.ones(n_layers, dtype=int)])
    return replace(
        one,
        distances=one.distances[gaps],
        shifts_m=one.shifts_m[gaps],
        tilts_rad=one.tilts_rad[gaps],
        phase_screens=np.repeat(one.phase_screens, n_layers, axis=0),
        mask_offsets_px=np.repeat(one.mask_offsets_px, n_layers, axis=0),
    )


def illumination_envelope(
    rng: np.random.Generator, geometry: Geometry, falloff: float, ripple: float, ripple_corr_px: float
) -> np.ndarray:
    """Amplitude envelope: ``exp(-(r/w)^2)`` with ``1 - falloff`` at the object's corner radius, times ripple."""
    n = geometry.n
    c = np.arange(n) - (n - 1) / 2.0
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    if falloff > 0:
        r_edge2 = 2.0 * (geometry.object_px / 2.0) ** 2
        env = np.exp(r2 / r_edge2 * math.log(max(1.0 - falloff, 1e-6)))
    else:
        env = np.ones((n, n))
    if ripple > 0:
        env = env * (1.0 + correlated_screen(rng, (n, n), ripple, ripple_corr_px))
    return np.clip(env, 0.0, None)


def slm_response(commanded, hidden: HiddenState, backend):
    """Realised phase of one layer from its commanded phase (radians, backend arrays).

    ``wrap -> quantise (straight-through) -> gamma curve 2 pi (p / 2 pi)^gamma -> fringing
    blur -> mask offset -> + fabrication screen`` (the screen is added by the caller).
    """
    xp = backend.xp
    p = xp.mod(commanded, TWO_PI)
    if hidden.quant_step > 0:
        levels = round(TWO_PI / hidden.quant_step)
        p = xp.mod(xp.floor(p / hidden.quant_step + 0.5), levels) * hidden.quant_step
    if hidden.gamma != 1.0:
        p = TWO_PI * (p / TWO_PI) ** hidden.gamma
    if hidden.crosstalk_sigma_px > 0:
        p = backend.ndimage.gaussian_filter(p, hidden.crosstalk_sigma_px, mode="nearest")
    return p


def shift_map(image, offset_px, backend):
    """Sub-pixel lateral shift of a real map (a decentred mask), via linear interpolation."""
    if not np.any(offset_px):
        return image
    return backend.ndimage.shift(image, tuple(float(o) for o in offset_px), order=1, mode="nearest")
