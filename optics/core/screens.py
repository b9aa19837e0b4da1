"""Correlated random phase screens (fabrication errors, scattering layers)."""

from __future__ import annotations

import numpy as np


def correlated_screen(rng: np.random.Generator, shape: tuple[int, int], rms: float, corr_px: float) -> np.ndarray:
    """Gaussian random field (radians) with Gaussian correlation of ``corr_px`` pixels and rms ``rms``.

    ``s = rms * (g * w) / std(g * w)``: white normals ``w`` of ``shape`` filtered by a
    periodic Gaussian ``g`` of standard deviation ``corr_px`` px (``corr_px = 0``: white).
    """
    from scipy.ndimage import gaussian_filter

    white = rng.standard_normal(shape)
    if rms == 0:
        return np.zeros(shape)
    smooth = gaussian_filter(white, corr_px, mode="wrap") if corr_px > 0 else white
    return smooth * (rms / smooth.std())
