"""Losses on detected intensity, returning the loss and its derivative.

All losses are means over the batch, so derivatives carry a ``1/B``.
"""

from __future__ import annotations

from optics.core.backend import array_namespace
from optics.core.validate import check_positive

LOSSES = ("cross_entropy", "mse")


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
