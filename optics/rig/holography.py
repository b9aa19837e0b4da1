"""Field measurement from camera frames: phase-shifting and off-axis holography.

Convention: the SLM adds a phase step ``d_k`` to the signal ``E`` (complex, sqrt(counts)
per pixel); the reference ``R`` is fixed; frame ``k`` records::

    I_k = |E exp(i d_k) + R|^2 = |E|^2 + |R|^2 + 2 Re(C exp(i d_k)),   C = E conj(R)

Phase shifting recovers ``C`` per pixel by least squares over the steps (3-step
``(0, pi/2, pi)`` as in Xue et al. 2024's lab code, 4-step ``(0, pi/2, pi, 3 pi/2)``);
off-axis holography recovers it from one frame with a tilted reference by Fourier
filtering. Pure NumPy functions on arrays; noise budgets are in docs/design.md section 4.
"""

from __future__ import annotations

import enum
import math

import numpy as np


class Scheme(enum.StrEnum):
    THREE_STEP = "3-step"
    FOUR_STEP = "4-step"
    OFF_AXIS = "off-axis"


_STEPS = {
    Scheme.THREE_STEP: (0.0, math.pi / 2, math.pi),
    Scheme.FOUR_STEP: (0.0, math.pi / 2, math.pi, 3 * math.pi / 2),
    Scheme.OFF_AXIS: (0.0,),
}


class SaturationError(ValueError):
    """Frames hold more saturated pixels than allowed."""


def phase_steps(scheme: str) -> tuple[float, ...]:
    """The phase steps (radians) the SLM adds to the signal, one per frame."""
    try:
        return _STEPS[Scheme(scheme)]
    except ValueError:
        raise ValueError(
            f"holography scheme must be one of {', '.join(s.value for s in Scheme)}; got {scheme!r}"
        ) from None


def interferograms(field, reference, steps) -> np.ndarray:
    """Frames ``|E exp(i d_k) + R|^2`` (K, *shape), float64: the forward model of phase shifting."""
    field = np.asarray(field, dtype=np.complex128)
    return np.stack([np.abs(field * np.exp(1j * d) + reference) ** 2 for d in steps])


def _solver(steps) -> np.ndarray:
    """The (3, K) least-squares solver of ``I_k = a + 2 Re(C) cos d_k - 2 Im(C) sin d_k``."""
    d = np.asarray(steps, dtype=np.float64)
    if d.ndim != 1 or d.size < 3:
        raise ValueError(f"phase shifting needs >= 3 steps, got {tuple(np.atleast_1d(d))}")
    design = np.stack([np.ones_like(d), 2 * np.cos(d), -2 * np.sin(d)], axis=1)
    if np.linalg.matrix_rank(design) < 3:
        raise ValueError(f"phase steps {tuple(d)} are degenerate: use at least 3 distinct steps mod 2 pi")
    return np.linalg.pinv(design)


def phase_shifting_cross(frames, steps) -> np.ndarray:
    """``C = E conj(R)`` per pixel from frames (K, ...) taken at ``steps`` (least squares)."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape[0] != len(steps):
        raise ValueError(f"{frames.shape[0]} frames for {len(steps)} phase steps")
    solve = _solver(steps)
    coef = np.tensordot(solve[1:], frames, axes=(1, 0))
    return coef[0] + 1j * coef[1]


def off_axis_cross(frame, carrier_cyc_per_px, radius_cyc_per_px: float) -> np.ndarray:
    """``C = E conj(R0)`` from one frame with a tilted reference ``R0 exp(i 2 pi f.r)``.

    The frame holds ``C exp(-i 2 pi f.r) + c.c.`` besides the DC terms; the sideband at
    ``-f`` is cut out with a disc of ``radius_cyc_per_px`` and moved to DC. The disc must
    stay clear of DC and of the conjugate sideband (``radius < |f| / 2``... used here as
    ``radius <= |f| / 3``, since the DC term ``|E|^2`` is twice as wide as ``E``) and
    inside the frequency cell (``|f| + radius <= 0.5``)."""
    fy, fx = (float(v) for v in carrier_cyc_per_px)
    carrier = math.hypot(fy, fx)
    if not 0 < radius_cyc_per_px <= carrier / 3 or max(abs(fy), abs(fx)) + radius_cyc_per_px > 0.5:
        raise ValueError(
            f"off-axis filter radius {radius_cyc_per_px} cycles/px does not fit carrier {(fy, fx)}: "
            "need 0 < radius <= |carrier| / 3 and |carrier component| + radius <= 0.5"
        )
    frame = np.asarray(frame, dtype=np.float64)
    ny, nx = frame.shape[-2:]
    gy, gx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    disc = (gy + fy) ** 2 + (gx + fx) ** 2 <= radius_cyc_per_px**2
    spectrum = np.fft.fft2(frame) * disc
    y, x = np.arange(ny)[:, None], np.arange(nx)[None, :]
    return np.fft.ifft2(spectrum) * np.exp(2j * np.pi * (fy * y + fx * x))


def average_frames(frames, axis: int = 0) -> np.ndarray:
    """The mean of repeated exposures (float64)."""
    return np.mean(np.asarray(frames, dtype=np.float64), axis=axis)


def saturated_fraction(frames, full_scale: float) -> float:
    """Fraction of pixels at or above the camera's full scale."""
    frames = np.asarray(frames)
    return float(np.count_nonzero(frames >= full_scale)) / max(frames.size, 1)


def check_saturation(frames, full_scale: float, max_fraction: float) -> None:
    """SaturationError (one line) when more than ``max_fraction`` of the pixels saturate."""
    fraction = saturated_fraction(frames, full_scale)
    if fraction > max_fraction:
        raise SaturationError(
            f"{fraction:.2%} of the pixels reach full scale {full_scale:g} (allowed {max_fraction:.2%}); "
            "lower the exposure or the light"
        )
