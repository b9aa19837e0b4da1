"""NLOS amplitude imaging with FFM: the 1 - SSIM objective, its gradient, training and evaluation.

The set-up is in :mod:`optics.scattering.nlos`. A camera frame ``I_b`` (n, n) is read with
auto-exposure (the ADC's range follows the frame's peak), so the image is
``x_b = I_b / m_b`` with ``m_b = max_p I_bp``, compared with the ground truth ``T_b`` (the
scene's reflectance map, range [0, 1]) by SSIM (:mod:`optics.scattering.ssim`)::

    L = (1/B) sum_b (1 - SSIM(x_b, T_b))
    dL/dI_b = -(1/B) [ g_b / m_b - delta_{p*_b} <g_b, I_b> / m_b^2 ],   g_b = dSSIM/dx_b,  p*_b = argmax I_b

(the peak's derivative is taken at its pixel). FFM step (``docs/design.md`` section 1): data
pass, ``e_b = (dL/dI_b) conj(y_b)``, forward-only error pass ``eps_b = M_b e_b``, and
``dL/dphi = -2 Im(U^T sum_b u eps_b)``; one holographic camera frame per pass, so a step over
B scenes costs ``2 B`` camera frames (the focusing study's convention). The paper's Adam lr
is 0.01 with each sample's gradient rescaled to a peak of 0.002, which also weights the samples
differently; here the batch mean is not rescaled, and Adam's step is about ``lr`` radians.

**Gradient fidelity** (``docs/design.md`` section 1.5): cosine of the measured FFM gradient
against the exact one, ``-2 Im(U^T sum_b u eps_b)`` with ``eps_b = M_b^T e_b`` from the
noise-free data pass. Noise keys: data and error passes ``PassKey(step, pass, samples)`` with
the scene's sample id; evaluations use the ``inference`` pass.
"""

from __future__ import annotations

import numpy as np

from optics.core.ffm import error_field, gradient_fidelity, phase_gradient
from optics.core.measurement import PassKey
from optics.core.optim import OptimizerSpec, init_state
from optics.core.optim import step as adam_step
from optics.scattering.medium import segment_sum
from optics.scattering.nlos import HiddenScene
from optics.scattering.ssim import psnr_db, ssim, ssim_grad


def normalise(frames) -> np.ndarray:
    """Auto-exposed images ``x_b = I_b / max_p I_bp`` (B, n, n) float64."""
    f = np.asarray(frames, dtype=np.float64)
    return f / np.maximum(f.max(axis=(-2, -1), keepdims=True), 1e-300)


def imaging_loss(intensity, targets) -> tuple[float, np.ndarray, np.ndarray]:
    """``(L, dL/dI (B, n, n), SSIM per scene (B,))`` for frames (B, n, n) and ground truth (module doc)."""
    i = np.asarray(intensity, dtype=np.float64)
    b = i.shape[0]
    m = np.maximum(i.max(axis=(-2, -1), keepdims=True), 1e-300)
    s, g = ssim_grad(i / m, targets)
    dx = -g / b
    d = dx / m
    peak = i.reshape(b, -1).argmax(axis=1)
    d.reshape(b, -1)[np.arange(b), peak] -= (dx * i).sum(axis=(-2, -1)) / m[:, 0, 0] ** 2
    return float(np.mean(1.0 - s)), d, s


def ffm_gradient(
    scene: HiddenScene, phases, objects, targets, step: int = 0, samples=None, exact: bool = False
) -> tuple[float, np.ndarray, np.ndarray]:
    """FFM gradient of the imaging loss w.r.t. the mask (S, S), radians^-1, over scenes (B, n, n).

    Measured data pass, ``e = (dL/dI) conj(y)``, forward-only error pass, ``-2 Im(U^T sum_b u eps_b)``.
    ``exact=True``: the oracle, noise-free with ``M^T``. Returns (loss, gradient float64, SSIM (B,)).
    """
    be = scene.backend
    samples = tuple(range(len(objects))) if samples is None else tuple(samples)
    phases = np.asarray(phases, dtype=np.float64)
    if exact:
        taps = scene.true_data_pass(phases, objects)
    else:
        taps = scene.data_pass(phases, objects, PassKey(step, "data", samples))
    value, d_int, s = imaging_loss(be.to_numpy(taps.intensity), targets)
    e = error_field(be.asarray(d_int, be.real_dtype), taps.output)
    if exact:
        eps = scene.true_error_pass(e, objects)
    else:
        eps = scene.error_pass(e, objects, PassKey(step, "error", samples))
    g = segment_sum(phase_gradient(taps.fields, eps.fields)[0], scene.spec.wall.segment_px)
    return value, be.to_numpy(g).astype(np.float64), s


def fidelity(scene: HiddenScene, phases, objects, targets, step: int = 0) -> dict[str, float]:
    """Cosine (and relative error) of the measured FFM gradient against the exact one, and of the
    noise-free forward-only gradient (symmetry alone: 1 in reflection) against the exact one."""
    _, measured, _ = ffm_gradient(scene, phases, objects, targets, step)
    _, exact, _ = ffm_gradient(scene, phases, objects, targets, exact=True)
    be = scene.backend
    taps = scene.true_data_pass(np.asarray(phases, dtype=np.float64), objects)
    _, d_int, _ = imaging_loss(be.to_numpy(taps.intensity), targets)
    e = error_field(be.asarray(d_int, be.real_dtype), taps.output)
    forward = scene.apply(e, objects)[None]  # Q = M: the forward-only pass without noise
    g_fwd = be.to_numpy(segment_sum(phase_gradient(taps.fields, forward)[0], scene.spec.wall.segment_px))
    out = gradient_fidelity(measured, exact)
    sym = gradient_fidelity(g_fwd, exact)
    return {"cosine": out["cosine"], "relative_error": out["relative_error"], "symmetry_cosine": sym["cosine"]}


def initial_mask(segments: int, seed: int, grain_px: float = 4.0) -> np.ndarray:
    """The paper's start: uniform random phase in [0, 2 pi) blurred to a ``grain_px`` grain (S, S)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([int(seed), 0x1405])
    return gaussian_filter(rng.uniform(0, 2 * np.pi, (segments, segments)), grain_px / 2, mode="wrap")


def reconstruct(scene: HiddenScene, phases, objects, key: PassKey | None = None) -> np.ndarray:
    """Auto-exposed camera images (B, n, n) of scenes through the mask: measured (``key``) or noise-free."""
    phases = np.asarray(phases, dtype=np.float64)
    if key is None:
        frames = scene.true_data_pass(phases, objects).intensity
    else:
        frames = scene.frames(phases, objects, key)
    return normalise(scene.backend.to_numpy(frames))


def image_metrics(images, targets) -> dict[str, float]:
    """Mean SSIM and PSNR (dB) of images (B, n, n) against their ground truth."""
    return {"ssim": float(np.mean(ssim(images, targets))), "psnr_db": float(np.mean(psnr_db(images, targets)))}


def evaluate(scene: HiddenScene, phases, test_sets: dict, step: int | None = None) -> dict[str, dict]:
    """Metrics per test set ``{name: (objects, first_sample_id)}``: measured frames (inference pass
    keyed ``step``) or, with ``step=None``, noise-free frames (a diagnostic that costs no frames)."""
    out = {}
    for name, (objects, first_id) in test_sets.items():
        key = None if step is None else PassKey(step, "inference", tuple(range(first_id, first_id + len(objects))))
        out[name] = image_metrics(reconstruct(scene, phases, objects, key), objects**2)
    return out


def train_ffm(
    scene: HiddenScene, objects, steps: int, lr: float, init_phases, test_sets: dict, record_every: int = 5
) -> dict:
    """Adam on the FFM gradient over the training scenes (B, n, n), one batch of all B per step.

    Returns plain NumPy: ``frames`` (camera frames used, per recorded step), ``loss`` (measured,
    per step), ``curve`` ({test set: SSIM per recorded step, noise-free}), ``phases`` (S, S)."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps}")
    spec = OptimizerSpec(lr=lr)
    params = {"phase": np.array(init_phases, dtype=np.float64)}
    state = init_state(spec, params)
    targets = objects**2
    hist = {"loss": [], "record_steps": [], "frames": [], "curve": {k: [] for k in test_sets}}
    for t in range(int(steps) + 1):
        if t % record_every == 0 or t == steps:
            hist["record_steps"].append(t)
            hist["frames"].append(2 * len(objects) * t)
            for k, v in evaluate(scene, params["phase"], test_sets).items():
                hist["curve"][k].append(v["ssim"])
        if t == steps:
            break
        value, grad, _ = ffm_gradient(scene, params["phase"], objects, targets, step=t)
        params, state = adam_step(spec, params, {"phase": grad}, state)
        hist["loss"].append(value)
    out = {k: np.asarray(v) for k, v in hist.items() if k != "curve"}
    out["curve"] = {k: np.asarray(v) for k, v in hist["curve"].items()}
    out["phases"] = np.mod(params["phase"], 2 * np.pi)
    return out
