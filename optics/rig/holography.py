"""Field measurement from camera frames: phase-shifting and off-axis holography.

Convention: the SLM adds a phase step ``d_k`` to the signal ``E`` (complex, sqrt(electrons)
per pixel per frame); the reference ``R`` (same units) is fixed; frame ``k`` records::

    I_k = |E exp(i d_k) + R|^2 = |E|^2 + |R|^2 + 2 Re(C exp(i d_k)),   C = E conj(R)

Phase shifting recovers ``C`` per pixel by least squares over the steps (3-step
``(0, pi/2, pi)`` as in Xue et al. 2024's lab code, 4-step ``(0, pi/2, pi, 3 pi/2)``);
off-axis holography recovers it from one frame with a tilted reference by Fourier
filtering. Pure NumPy functions on arrays (float64 / complex128). The phase steps and the
noise budget (:func:`quadrature_noise_std`) live in :mod:`optics.core.holographic_noise`,
which the simulated cameras share; equations in docs/design.md section 4.3.
"""

from __future__ import annotations

import math

import numpy as np

from optics.core.holographic_noise import (
    HOMODYNE,
    Scheme,
    phase_shifting_solver,
    phase_steps,
    quadrature_factors,
    quadrature_noise_std,
)

__all__ = [
    "HOMODYNE",
    "SaturationError",
    "Scheme",
    "average_frames",
    "check_saturation",
    "interferograms",
    "off_axis_cross",
    "off_axis_disc",
    "phase_shifting_cross",
    "phase_steps",
    "quadrature_factors",
    "quadrature_noise_std",
    "saturated_fraction",
]


class SaturationError(ValueError):
    """Frames hold more saturated pixels than allowed."""


def interferograms(field, reference, steps) -> np.ndarray:
    """Frames ``I_k = |E exp(i d_k) + R|^2`` (K, *shape), float64 electrons: the forward model.

    ``field`` ``E`` and ``reference`` ``R`` in sqrt(electrons) per pixel per frame (any
    broadcastable shapes; a tilted ``R`` makes an off-axis frame), ``steps`` ``d_k`` in radians."""
    field = np.asarray(field, dtype=np.complex128)
    return np.stack([np.abs(field * np.exp(1j * d) + reference) ** 2 for d in steps])


def phase_shifting_cross(frames, steps) -> np.ndarray:
    """``C = E conj(R)`` per pixel (complex128, electrons) from ``frames`` (K, ...) taken at ``steps``.

    Least squares on ``I_k = a + 2 Re(C) cos d_k - 2 Im(C) sin d_k``: the 3 x 3 normal
    equations are solved once for the steps and applied to every pixel, so any trailing
    shape works (``(K, *plane)``, ``(K, B, *plane)``). Needs >= 3 distinct steps mod 2 pi."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim < 1 or frames.shape[0] != len(steps):
        raise ValueError(
            f"frames must have one leading entry per phase step: got shape {frames.shape} for {len(steps)} steps"
        )
    solve = phase_shifting_solver(steps)
    coef = np.tensordot(solve[1:], frames, axes=(1, 0))
    return coef[0] + 1j * coef[1]


def _check_disc(carrier_cyc_per_px, radius_cyc_per_px: float) -> tuple[float, float]:
    fy, fx = (float(v) for v in carrier_cyc_per_px)
    carrier = math.hypot(fy, fx)
    if not 0 < radius_cyc_per_px <= carrier / 3 or max(abs(fy), abs(fx)) + radius_cyc_per_px > 0.5:
        raise ValueError(
            f"off-axis filter radius {radius_cyc_per_px} cycles/px does not fit carrier {(fy, fx)}: "
            "need 0 < radius <= |carrier| / 3 and max(|fy|, |fx|) + radius <= 0.5"
        )
    return fy, fx


def off_axis_disc(shape, carrier_cyc_per_px, radius_cyc_per_px: float) -> np.ndarray:
    """The Fourier filter (ny, nx) bool: the disc of ``radius_cyc_per_px`` around the sideband at
    ``-carrier`` on the grid ``np.fft.fftfreq``. Its mean is the filter fraction ``f`` (about
    ``pi radius^2``) of :func:`quadrature_noise_std`."""
    fy, fx = _check_disc(carrier_cyc_per_px, radius_cyc_per_px)
    ny, nx = shape[-2:]
    gy, gx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    return (gy + fy) ** 2 + (gx + fx) ** 2 <= radius_cyc_per_px**2


def off_axis_cross(frame, carrier_cyc_per_px, radius_cyc_per_px: float) -> np.ndarray:
    """``C = E conj(R0)`` (complex128, same grid) from one frame with a tilted reference.

    The reference is ``R(r) = R0 exp(i 2 pi (fy y + fx x))`` (``carrier_cyc_per_px = (fy, fx)``,
    cycles per pixel, ``y``/``x`` pixel indices along the last two axes), so the frame holds::

        I = |E|^2 + |R0|^2 + C exp(-i 2 pi f.r) + conj(C) exp(+i 2 pi f.r)

    The sideband at ``-f`` is cut out with a disc of ``radius_cyc_per_px`` (FFT over the last
    two axes, leading axes are a batch) and moved to DC by multiplying with
    ``exp(+i 2 pi f.r)``. Exact when ``E``'s spectrum lies inside the disc and the three terms
    stay apart: ``|E|^2`` spans ``2 radius`` around DC, so the rule is ``radius <= |f| / 3``;
    the disc must stay inside the frequency cell, ``max(|fy|, |fx|) + radius <= 0.5``. A carrier
    off the FFT grid (not a multiple of ``1/ny``, ``1/nx``) leaks a little of the sideband."""
    frame = np.asarray(frame, dtype=np.float64)
    if frame.ndim < 2:
        raise ValueError(f"frame must have at least 2 axes (..., ny, nx), got shape {frame.shape}")
    disc = off_axis_disc(frame.shape, carrier_cyc_per_px, radius_cyc_per_px)
    fy, fx = (float(v) for v in carrier_cyc_per_px)
    ny, nx = frame.shape[-2:]
    y, x = np.arange(ny)[:, None], np.arange(nx)[None, :]
    sideband = np.fft.ifft2(np.fft.fft2(frame) * disc)
    return sideband * np.exp(2j * np.pi * (fy * y + fx * x))


def average_frames(frames, axis: int = 0) -> np.ndarray:
    """The mean of repeated exposures along ``axis`` (float64): noise variance falls as 1 / count."""
    return np.mean(np.asarray(frames, dtype=np.float64), axis=axis)


def saturated_fraction(frames, full_scale: float) -> float:
    """Fraction of pixels at or above the camera's full scale (same units as ``frames``)."""
    frames = np.asarray(frames)
    return float(np.count_nonzero(frames >= full_scale)) / max(frames.size, 1)


def check_saturation(frames, full_scale: float, max_fraction: float) -> None:
    """SaturationError (one line) when more than ``max_fraction`` of the pixels saturate."""
    fraction = saturated_fraction(frames, full_scale)
    if fraction > max_fraction:
        raise SaturationError(
            f"{fraction:.2%} of the pixels reach full scale {full_scale:g} (allowed {max_fraction:.2%}); "
            "lower the exposure (or the light)"
        )


def fourier_shift(field: np.ndarray, shift_px) -> np.ndarray:
    """``field(r - d)`` for a sub-pixel shift ``d = (dy, dx)`` pixels (periodic, exact for band-limited fields)."""
    if not np.any(shift_px):
        return field
    fy = np.fft.fftfreq(field.shape[-2])[:, None]
    fx = np.fft.fftfreq(field.shape[-1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * shift_px[0] + fx * shift_px[1]))
    return np.fft.ifft2(np.fft.fft2(field) * ramp)


def downsample(field: np.ndarray, factor: int) -> np.ndarray:
    """A band-limited field sampled ``factor`` times finer, back on the coarse grid (spectrum cropped)."""
    if factor == 1:
        return field
    n = field.shape[-1] // factor
    spectrum = np.fft.fftshift(np.fft.fft2(field))
    o = (field.shape[-1] - n) // 2
    return np.fft.ifft2(np.fft.ifftshift(spectrum[o : o + n, o : o + n])) / factor**2
