"""Optimisers on phase (and amplitude) parameters: pure ``init`` and ``step`` functions.

State is a dict of NumPy arrays (checkpointable as .npz); ``step`` returns new
parameters and a new state and never mutates its arguments. Parameters and gradients
are dicts with the same keys (``'phase'``, optionally ``'amplitude'``).

- SGD with momentum ``mu``: ``v <- mu v + g``, ``p <- p - lr v``.
- Adam (Kingma and Ba, 2015): ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
  ``p <- p - lr m_hat / (sqrt(v_hat) + eps)`` with bias-corrected moments.

Phases are kept continuous (the SLM quantises what it writes: straight-through);
amplitudes are clipped to ``[amplitude_floor, 1]`` after each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optics.core.validate import check_choice, check_nonnegative, check_positive

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class OptimizerSpec:
    """``kind`` 'adam' or 'sgd'; ``lr`` in radians per step for Adam (per unit gradient for SGD)."""

    kind: str = "adam"
    lr: float = 0.1  # radians per step: the training default (ffm-train's trainer.lr reads it from here)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    amplitude_floor: float = 1e-3

    def __post_init__(self) -> None:
        check_choice("optimizer", self.kind, OPTIMIZERS)
        check_positive("lr", self.lr)
        for name in ("beta1", "beta2", "momentum"):
            v = check_nonnegative(name, getattr(self, name))
            if v >= 1:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        check_positive("eps", self.eps)


def init_state(spec: OptimizerSpec, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zero moments for every parameter and a step counter."""
    state = {"step": np.zeros((), dtype=np.int64)}
    for k, p in params.items():
        state[f"m/{k}"] = np.zeros_like(p, dtype=np.float64)
        if spec.kind == "adam":
            state[f"v/{k}"] = np.zeros_like(p, dtype=np.float64)
    return state


def step(spec: OptimizerSpec, params: dict, grads: dict, state: dict) -> tuple[dict, dict]:
    """One update; returns ``(new_params, new_state)``."""
    if set(grads) != set(params):
        raise ValueError(f"gradient keys {sorted(grads)} do not match parameter keys {sorted(params)}")
    t = int(state["step"]) + 1
    new_state = {"step": np.asarray(t, dtype=np.int64)}
    new_params = {}
    for k, p in params.items():
        g = np.asarray(grads[k], dtype=np.float64)
        if g.shape != p.shape:
            raise ValueError(f"gradient '{k}' has shape {g.shape}, expected {p.shape}")
        if spec.kind == "adam":
            m = spec.beta1 * state[f"m/{k}"] + (1 - spec.beta1) * g
            v = spec.beta2 * state[f"v/{k}"] + (1 - spec.beta2) * g * g
            m_hat, v_hat = m / (1 - spec.beta1**t), v / (1 - spec.beta2**t)
            new = p - spec.lr * m_hat / (np.sqrt(v_hat) + spec.eps)
            new_state[f"m/{k}"], new_state[f"v/{k}"] = m, v
        else:
            m = spec.momentum * state[f"m/{k}"] + g
            new = p - spec.lr * m
            new_state[f"m/{k}"] = m
        if k == "amplitude":
            new = np.clip(new, spec.amplitude_floor, 1.0)
        new_params[k] = new
    return new_params, new_state
