"""Focusing through a scattering medium: FFM against model-free (intensity-only) optimisers.

All runners share one protocol so their costs compare directly: every camera frame the
optimiser needs is one **optical pass** (FFM: a data pass and an error pass per step, each
one holographic frame, e.g. off-axis holography; phase-stepping holography would need 4
frames per field). The enhancement curve is a noise-free evaluation of the current phases
by the simulator after each update (a diagnostic; it costs no passes). Each runner takes
a :class:`optics.scattering.medium.ScatteringMedium` and plain arguments and returns a dict of
NumPy arrays: ``passes``, ``enhancement`` (Vellekoop-Mosk, against the mean of random-phase
frames, ``reference``), ``phases`` (S, S), ``frame_before``/``frame_after`` (n, n), ``final``
(:func:`optics.scattering.focus.focus_metrics`), and ``loss`` (FFM) or nothing more.

- :func:`focus_ffm`: Adam on the FFM gradient ``-2 Im(U^T (u eps))``.
- :func:`focus_sequential`: the continuous sequential algorithm (Vellekoop and Mosk, Opt.
  Commun. 281, 3071, 2008): segment by segment, P frames with the segment's phase at
  ``2 pi p / P``; the target signal is ``A + B cos(theta - phi*)``, so
  ``phi* = arg sum_p s_p exp(i theta_p)``; N P passes per cycle.
- :func:`focus_pso`: particle swarm optimisation (Kennedy and Eberhart 1995) on the
  target signal, one pass per particle per iteration.
"""

from __future__ import annotations

import math

import numpy as np

from optics.core.measurement import PassKey
from optics.core.optim import OptimizerSpec, init_state
from optics.core.optim import step as adam_step
from optics.scattering.focus import (
    camera_frame,
    enhancement,
    exclusion_px,
    focus_gradient,
    focus_metrics,
    reference_frame,
)
from optics.scattering.medium import ScatteringMedium, check_targets


def focus_ffm(
    medium: ScatteringMedium, targets, steps: int = 40, lr: float = 0.3, loss: str = "log_intensity", init_phases=None
) -> dict:
    """Focus with FFM and Adam: 2 optical passes (data + error) per step.

    Returns plain NumPy: ``passes`` and ``enhancement`` (noise-free evaluation after each
    step, index 0 = start), ``loss`` (measured, per step), ``phases`` (S, S) radians,
    ``frame_before`` / ``frame_after`` (n, n) noise-free camera images, ``final``: :func:`focus_metrics`.
    """
    _check_count("steps", steps, 1)
    spec, targets = OptimizerSpec(lr=lr), check_targets(targets, medium.spec.n)
    params = {"phase": _initial_phases(medium, init_phases)}
    state = init_state(spec, params)
    history = _start_history(medium, params["phase"], targets)
    for t in range(int(steps)):
        value, grad, _ = focus_gradient(medium, params["phase"], targets, loss, step=t)
        params, state = adam_step(spec, params, {"phase": grad}, state)
        history["loss"].append(value)
        _record(history, medium, params["phase"], targets, 2 * (t + 1))
    return _finish_history(history, medium, params["phase"])


def _initial_phases(medium: ScatteringMedium, init_phases) -> np.ndarray:
    s = medium.spec.segments
    if init_phases is None:
        return np.zeros((s, s))
    phi = np.asarray(init_phases, dtype=np.float64)
    if phi.shape != (s, s) or not np.all(np.isfinite(phi)):
        raise ValueError(f"init_phases must be finite radians of shape ({s}, {s}), got shape {phi.shape}")
    return phi.copy()


def _start_history(medium, phases, targets) -> dict:
    h = {
        "passes": [],
        "enhancement": [],
        "loss": [],
        "frame_before": camera_frame(medium, phases),
        "reference": reference_frame(medium),
        "targets": targets,
    }
    _record(h, medium, phases, targets, 0)
    return h


def _record(history: dict, medium, phases, targets, passes: int) -> None:
    history["passes"].append(passes)
    history["enhancement"].append(
        enhancement(camera_frame(medium, phases), targets, exclusion_px(medium.spec), history["reference"])
    )


def _finish_history(history: dict, medium, phases) -> dict:
    out = {k: np.asarray(v) for k, v in history.items()}
    out["phases"] = np.mod(phases, 2 * np.pi)
    out["frame_after"] = camera_frame(medium, phases)
    out["final"] = focus_metrics(medium, phases, history["targets"], history["reference"])
    return out


def passes_to_reach(history: dict, level: float) -> float:
    """Optical passes a run needed until its enhancement first reached ``level`` (inf: never)."""
    hit = np.flatnonzero(np.asarray(history["enhancement"]) >= level)
    return float(history["passes"][hit[0]]) if hit.size else math.inf


def focus_sequential(
    medium: ScatteringMedium, targets, cycles: int = 2, phase_steps: int = 4, init_phases=None, record_every: int = 16
) -> dict:
    """Continuous sequential algorithm; ``phase_steps`` >= 3 frames per segment (see module doc)."""
    _check_count("cycles", cycles, 1)
    _check_count("phase_steps", phase_steps, 3)
    _check_count("record_every", record_every, 1)
    targets, s = check_targets(targets, medium.spec.n), medium.spec.segments
    phases = _initial_phases(medium, init_phases)
    history = _start_history(medium, phases, targets)
    theta = 2 * np.pi * np.arange(phase_steps) / phase_steps
    passes = 0
    for j in range(int(cycles) * s * s):
        r, c = divmod(j % (s * s), s)
        batch = np.repeat(phases[None], phase_steps, axis=0)
        batch[:, r, c] = theta
        signal = _target_signal(medium, batch, targets, PassKey(j, "inference", tuple(range(phase_steps))))
        phases[r, c] = np.mod(np.angle(np.sum(signal * np.exp(1j * theta))), 2 * np.pi)
        passes += phase_steps
        if (j + 1) % record_every == 0:
            _record(history, medium, phases, targets, passes)
    return _finish_history(history, medium, phases)


def focus_pso(
    medium: ScatteringMedium,
    targets,
    particles: int = 16,
    iterations: int = 100,
    inertia: float = 0.7,
    c_personal: float = 1.5,
    c_global: float = 1.5,
    seed: int = 0,
) -> dict:
    """Particle swarm on the target signal: ``v <- w v + c1 r1 (p_best - x) + c2 r2 (g_best - x)``,
    ``x <- x + v`` with phase differences wrapped to (-pi, pi]; starts from random phases."""
    _check_count("particles", particles, 2)
    _check_count("iterations", iterations, 1)
    targets, s = check_targets(targets, medium.spec.n), medium.spec.segments
    rng = np.random.default_rng([int(seed), 0x950])
    x = rng.uniform(0, 2 * np.pi, (particles, s, s))
    v = np.zeros_like(x)
    history = _start_history(medium, np.zeros((s, s)), targets)
    best_x, best_f = x.copy(), _target_signal(medium, x, targets, PassKey(0, "inference", tuple(range(particles))))
    for it in range(1, int(iterations) + 1):
        g = best_x[np.argmax(best_f)]
        r1, r2 = rng.random(x.shape), rng.random(x.shape)
        v = inertia * v + c_personal * r1 * _wrap(best_x - x) + c_global * r2 * _wrap(g - x)
        x = np.mod(x + v, 2 * np.pi)
        f = _target_signal(medium, x, targets, PassKey(it, "inference", tuple(range(particles))))
        better = f > best_f
        best_x[better], best_f[better] = x[better], f[better]
        _record(history, medium, best_x[np.argmax(best_f)], targets, (it + 1) * particles)
    return _finish_history(history, medium, best_x[np.argmax(best_f)])


def _target_signal(medium: ScatteringMedium, phases, targets, key: PassKey) -> np.ndarray:
    """Measured target intensity ``sum_k I_k`` (B,) of one camera frame per phase pattern."""
    frames = medium.frames(phases, key)
    return medium.backend.to_numpy(frames[:, targets[:, 0], targets[:, 1]].sum(axis=1)).astype(np.float64)


def _wrap(d):
    return np.mod(d + np.pi, 2 * np.pi) - np.pi


def _check_count(name: str, value, minimum: int) -> None:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
