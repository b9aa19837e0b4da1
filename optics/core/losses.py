"""Losses on detected intensity, returning the loss and its derivative.

All losses are means over the batch, so derivatives carry a ``1/B``.
"""

from __future__ import annotations

from optics.core.backend import array_namespace
from optics.core.validate import check_positive

LOSSES = ("cross_entropy", "mse", "scaled_mse")


def softmax_cross_entropy(scores, labels, temperature: float):
    """Cross-entropy of ``softmax(s / T)`` against integer labels.

    ``scores`` (B, C) detector energies in units of the input power, ``labels`` (B,)
    int, ``temperature`` T > 0 (same units as the scores). Returns
    ``(loss, dL/ds (B, C), probabilities (B, C))`` with
    ``L = -(1/B) sum_b log p_{b, y_b}`` and ``dL/ds = (p - onehot) / (B T)``.
    """
    check_positive("temperature", temperature)
    xp = array_namespace(scores)
    b = scores.shape[0]
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    ez = xp.exp(z)
    p = ez / ez.sum(axis=1, keepdims=True)
    rows = xp.arange(b)
    loss = -xp.log(p[rows, labels] + 1e-30).mean()
    grad = p.copy()
    grad[rows, labels] -= 1.0
    grad /= b * temperature
    return float(loss), grad, p


def mse_to_target(intensity, target):
    """``L = (1/B) sum_b sum_px (I - I_target)^2``; returns ``(loss, dL/dI)``."""
    if intensity.shape != target.shape:
        raise ValueError(f"target has shape {tuple(target.shape)}, expected {tuple(intensity.shape)}")
    b = intensity.shape[0]
    diff = intensity - target
    return float((diff * diff).sum() / b), 2.0 * diff / b


def scaled_mse_to_pattern(intensity, pattern):
    """MSE to a target pattern after a least-squares scale of the intensity (Xue et al. 2024).

    Per sample, over its P pixels: ``s* = <I, T> / <I, I>`` (the scale that fits ``s I`` best to
    ``T``), ``L_b = (1/P) sum_p (s* I_p - T_p)^2``, and ``L = (1/B) sum_b L_b``. The scale depends
    on ``I``, but ``s*`` minimises ``f(s, I) = ||s I - T||^2``, so ``df/ds = 0`` there and the
    total derivative is the partial one (the envelope theorem)::

        dL/dI = (1/B) (2 / P) s* (s* I - T)

    exact, which is why treating ``s*`` as a constant (the paper's code detaches it) gives the
    true gradient. A dark sample (``<I, I> = 0``) has ``s* = 0`` and no gradient. Returns
    ``(loss, dL/dI)`` in the intensity's dtype; ``pattern`` has the intensity's shape (B, *plane).
    """
    if intensity.shape != pattern.shape:
        raise ValueError(f"pattern has shape {tuple(pattern.shape)}, expected {tuple(intensity.shape)}")
    xp = array_namespace(intensity)
    b = intensity.shape[0]
    axes = tuple(range(1, intensity.ndim))
    n_px = max(1, int(intensity[0].size))
    ii = (intensity * intensity).sum(axis=axes, keepdims=True)
    it = (intensity * pattern).sum(axis=axes, keepdims=True)
    scale = xp.where(ii > 0, it / xp.where(ii > 0, ii, 1), 0).astype(intensity.dtype, copy=False)
    diff = scale * intensity - pattern
    loss = float((diff * diff).sum() / (b * n_px))
    return loss, ((2.0 / (b * n_px)) * scale * diff).astype(intensity.dtype, copy=False)
