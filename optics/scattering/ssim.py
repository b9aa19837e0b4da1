"""Structural similarity (SSIM) and PSNR of images, with the SSIM gradient (NumPy, float64).

SSIM (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 13, 600, 2004) of an image ``x`` against a
reference ``y`` (both (..., h, w), dynamic range ``L``; here ``L = 1``): with ``W`` the
Gaussian window filter of standard deviation ``sigma_px`` (1.5 px, periodic boundaries, so
``W = W^T``: the kernel is even and the boundary wraps)::

    m_x = W x,   m_y = W y,   q_xx = W x^2,   q_yy = W y^2,   q_xy = W (x y)
    s_xx = q_xx - m_x^2,   s_yy = q_yy - m_y^2,   s_xy = q_xy - m_x m_y
    A1 = 2 m_x m_y + C1,   A2 = 2 s_xy + C2,   B1 = m_x^2 + m_y^2 + C1,   B2 = s_xx + s_yy + C2
    S = A1 A2 / (B1 B2)      (per pixel),     SSIM = mean_pixels S,   C1 = (0.01 L)^2,  C2 = (0.03 L)^2

Gradient with respect to ``x`` (``N`` pixels), from ``dS = S (dA1/A1 + dA2/A2 - dB1/B1 - dB2/B2)``::

    dS/dm_x  = S (2 m_y / A1 - 2 m_y / A2 - 2 m_x / B1 + 2 m_x / B2)
    dS/dq_xx = -S / B2,      dS/dq_xy = 2 S / A2
    dSSIM/dx = (1/N) [ W^T dS/dm_x + 2 x W^T dS/dq_xx + y W^T dS/dq_xy ]

PSNR in decibels: ``10 log10(L^2 / mean((x - y)^2))``.
"""

from __future__ import annotations

import numpy as np

SIGMA_PX = 1.5  # Gaussian window of Wang et al. 2004 (11 x 11 taps, sigma 1.5 px)
TRUNCATE = 10.0 / 3.0  # radius 5 px = truncate * sigma: the 11-tap window
C1 = 0.01**2  # (K1 L)^2 with L = 1
C2 = 0.03**2  # (K2 L)^2 with L = 1


def window(x: np.ndarray, sigma_px: float = SIGMA_PX) -> np.ndarray:
    """``W x``: periodic Gaussian filter over the last two axes (its own transpose)."""
    from scipy.ndimage import gaussian_filter1d

    out = gaussian_filter1d(np.asarray(x, dtype=np.float64), sigma_px, axis=-1, mode="wrap", truncate=TRUNCATE)
    return gaussian_filter1d(out, sigma_px, axis=-2, mode="wrap", truncate=TRUNCATE)


def _terms(x: np.ndarray, y: np.ndarray, sigma_px: float) -> dict:
    mx, my = window(x, sigma_px), window(y, sigma_px)
    sxx = window(x * x, sigma_px) - mx * mx
    syy = window(y * y, sigma_px) - my * my
    sxy = window(x * y, sigma_px) - mx * my
    t = {"mx": mx, "my": my, "A1": 2 * mx * my + C1, "A2": 2 * sxy + C2}
    t |= {"B1": mx * mx + my * my + C1, "B2": sxx + syy + C2}
    t["S"] = t["A1"] * t["A2"] / (t["B1"] * t["B2"])
    return t


def _check_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"images must share one shape (..., h, w), got {x.shape} and {y.shape}")
    return x, y


def ssim(x, y, sigma_px: float = SIGMA_PX) -> np.ndarray:
    """SSIM of ``x`` against ``y`` per image (...,), images (..., h, w) with range 1 (module doc)."""
    x, y = _check_pair(x, y)
    return _terms(x, y, sigma_px)["S"].mean(axis=(-2, -1))


def ssim_grad(x, y, sigma_px: float = SIGMA_PX) -> tuple[np.ndarray, np.ndarray]:
    """``(SSIM (...,), dSSIM/dx (..., h, w))`` per image, float64 (module doc for the equations)."""
    x, y = _check_pair(x, y)
    t = _terms(x, y, sigma_px)
    s, n_px = t["S"], x.shape[-1] * x.shape[-2]
    d_mx = s * (2 * t["my"] / t["A1"] - 2 * t["my"] / t["A2"] - 2 * t["mx"] / t["B1"] + 2 * t["mx"] / t["B2"])
    d_qxx = -s / t["B2"]
    d_qxy = 2 * s / t["A2"]
    grad = window(d_mx, sigma_px) + 2 * x * window(d_qxx, sigma_px) + y * window(d_qxy, sigma_px)
    return s.mean(axis=(-2, -1)), grad / n_px


def psnr_db(x, y) -> np.ndarray:
    """PSNR in dB per image (...,) for images of range 1: ``10 log10(1 / mean((x - y)^2))``."""
    x, y = _check_pair(x, y)
    mse = np.maximum(((x - y) ** 2).mean(axis=(-2, -1)), 1e-30)
    return 10.0 * np.log10(1.0 / mse)
