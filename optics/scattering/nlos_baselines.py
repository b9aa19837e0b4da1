"""NLOS imaging baselines: simulated annealing over Zernike modes, a ridge reconstruction from
the captured frames, a digit classifier on the frames, and the imager's frame rate.

**Simulated annealing** (Kirkpatrick et al. 1983; the paper's optimisation baseline): the
mask is ``phi = phi_0 + sum_j c_j Z_j`` over ``modes`` Zernike polynomials (Noll indices
``j = 2 .. modes + 1``, piston left out, unit rms over the disc inscribed in the S x S mask,
zero outside). Each iteration perturbs every ``c_j`` by ``Normal(0, step_rad^2)`` and measures
the nine training scenes (nine camera intensity frames); a worse loss is accepted with
probability ``exp(-dL / T)``, ``T`` falling geometrically from ``t_start`` to ``t_end``. The
budget is counted in camera frames, as FFM's (``2 B`` per step).

**Ridge reconstruction** (the digital baseline; the paper's is a CNN): with the mask left at
``phi_0``, the camera records the nine training scenes ``repeats`` times (noisy frames); a
linear map ``W`` from auto-exposed frames to ground truth minimises
``sum ||W x - T||^2 + alpha ||W||^2`` (scikit-learn ``Ridge``); a test frame's reconstruction
is ``W x`` clipped to [0, 1].

**Frame rate** (our definition; the paper's "> 1 kHz" is not defined in its code): the
trained all-optical imager needs one camera frame per image and no SLM write (the mask stays),
so its rate is the camera's frame rate, ``f = camera_fps``. A digital reconstruction adds its
compute time per frame: ``f = 1 / (1 / camera_fps + t_compute)``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from optics.core.measurement import PassKey
from optics.scattering.nlos import HiddenScene
from optics.scattering.nlos_imaging import image_metrics, imaging_loss, reconstruct

RIDGE_ROUND = 500_000  # noise rounds of the ridge's training frames (apart from annealing's rounds)


def noll_to_nm(j: int) -> tuple[int, int]:
    """Noll index ``j >= 1`` -> radial order ``n`` and signed azimuthal frequency ``m`` (Noll 1976)."""
    if int(j) != j or j < 1:
        raise ValueError(f"Noll index must be an integer >= 1, got {j}")
    n, rest = 0, int(j) - 1
    while rest > n:
        n += 1
        rest -= n
    m = (-1) ** int(j) * ((n % 2) + 2 * ((rest + (n + 1) % 2) // 2))
    return n, m


def zernike(j: int, size: int) -> np.ndarray:
    """Noll-normalised Zernike ``Z_j`` (unit rms over the inscribed disc) on a ``size x size`` grid."""
    n, m = noll_to_nm(j)
    c = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(c, c, indexing="ij")
    rho, theta = np.hypot(yy, xx), np.arctan2(yy, xx)
    radial = sum(
        (-1) ** k
        * math.factorial(n - k)
        / (math.factorial(k) * math.factorial((n + abs(m)) // 2 - k) * math.factorial((n - abs(m)) // 2 - k))
        * rho ** (n - 2 * k)
        for k in range((n - abs(m)) // 2 + 1)
    )
    if m == 0:
        z = math.sqrt(n + 1) * radial
    else:
        z = math.sqrt(2 * (n + 1)) * radial * (np.cos(m * theta) if m > 0 else np.sin(-m * theta))
    return np.where(rho <= 1, z, 0.0)


def zernike_basis(modes: int, size: int) -> np.ndarray:
    """``modes`` Zernike polynomials (modes, size, size), Noll ``j = 2 .. modes + 1``."""
    return np.stack([zernike(j, size) for j in range(2, int(modes) + 2)])


def _measured_loss(scene: HiddenScene, phases, objects, it: int) -> float:
    frames = scene.frames(phases, objects, PassKey(it, "inference", tuple(range(len(objects)))))
    return imaging_loss(scene.backend.to_numpy(frames), objects**2)[0]


def anneal(
    scene: HiddenScene,
    objects,
    frames: int,
    init_phases,
    modes: int = 28,
    step_rad: float = 0.1,
    t_start: float = 1e-3,
    t_end: float = 1e-5,
    seed: int = 0,
) -> dict:
    """Simulated annealing of the Zernike coefficients within a budget of camera ``frames``.

    Returns ``frames`` and ``loss`` (best measured loss after each iteration), ``coefficients``
    (modes,) radians, ``phases`` (S, S) of the best mask."""
    b = len(objects)
    iterations = int(frames) // b - 1
    if iterations < 1:
        raise ValueError(f"frames={frames} buys no iteration of {b} frames after the first evaluation")
    basis = zernike_basis(modes, scene.spec.wall.segments)
    rng = np.random.default_rng([int(seed), 0x5A])
    c = np.zeros(len(basis))
    loss = best = _measured_loss(scene, init_phases, objects, 0)
    best_c, used, curve = c.copy(), [b], [best]
    for it in range(1, iterations + 1):
        temp = t_start * (t_end / t_start) ** (it / iterations)
        trial = c + rng.normal(0.0, step_rad, c.shape)
        value = _measured_loss(scene, init_phases + np.tensordot(trial, basis, 1), objects, it)
        if value < loss or rng.random() < math.exp(-(value - loss) / temp):
            c, loss = trial, value
            if value < best:
                best, best_c = value, trial.copy()
        used.append((it + 1) * b)
        curve.append(best)
    phases = np.mod(init_phases + np.tensordot(best_c, basis, 1), 2 * np.pi)
    return {"frames": np.asarray(used), "loss": np.asarray(curve), "coefficients": best_c, "phases": phases}


def ridge_reconstruction(
    scene: HiddenScene, phases, objects, test_sets: dict, repeats: int = 4, alpha: float = 1e-2
) -> dict:
    """Fit the ridge map on ``repeats`` noisy frames of each training scene, reconstruct the test sets.

    Returns ``metrics`` ({test set: SSIM, PSNR}), ``images`` ({test set: (B, n, n)}), ``frames``
    (camera frames used to fit) and ``predict_s`` (compute time per reconstructed frame, seconds)."""
    from sklearn.linear_model import Ridge

    b = len(objects)
    x = np.concatenate(
        [
            reconstruct(scene, phases, objects, PassKey(RIDGE_ROUND + r, "inference", tuple(range(b))))
            for r in range(int(repeats))
        ]
    )
    y = np.tile((objects**2).reshape(b, -1), (int(repeats), 1))
    model = Ridge(alpha=alpha).fit(x.reshape(len(x), -1), y)
    metrics, images, spent, count = {}, {}, 0.0, 0
    for name, (test, first_id) in test_sets.items():
        key = PassKey(0, "inference", tuple(range(first_id, first_id + len(test))))
        frames = reconstruct(scene, phases, test, key)
        t0 = time.perf_counter()
        pred = np.clip(model.predict(frames.reshape(len(test), -1)), 0, 1).reshape(test.shape)
        spent, count = spent + time.perf_counter() - t0, count + len(test)
        metrics[name], images[name] = image_metrics(pred, test**2), pred
    return {"metrics": metrics, "images": images, "frames": b * int(repeats), "predict_s": spent / count}


def classify_digits(
    scene: HiddenScene, masks: dict, digits_train, digits_test, bin_px: int = 1, max_iter: int = 2000
) -> dict:
    """Accuracy of a logistic-regression classifier on the camera frames of hidden digits, per mask.

    ``digits_*`` are ``(scenes (B, n, n), labels (B,))``; ``masks`` ``{name: phases (S, S)}``;
    the entry ``ground_truth`` classifies the unscattered reflectance maps (upper bound). Features:
    frames binned over ``bin_px`` x ``bin_px`` pixels (a binned camera readout), standardised."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (xtr, ytr), (xte, yte) = digits_train, digits_test
    out = {}
    feats = {"ground_truth": (xtr**2, xte**2)}
    for name, phases in masks.items():
        ftr = reconstruct(scene, phases, xtr, PassKey(0, "inference", tuple(range(10_000, 10_000 + len(xtr)))))
        fte = reconstruct(scene, phases, xte, PassKey(1, "inference", tuple(range(20_000, 20_000 + len(xte)))))
        feats[name] = (ftr, fte)
    for name, (ftr, fte) in feats.items():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        clf.fit(_binned(ftr, bin_px), ytr)
        out[name] = float(clf.score(_binned(fte, bin_px), yte))
    return out


def _binned(frames: np.ndarray, b: int) -> np.ndarray:
    """Frames (B, n, n) summed over b x b pixel blocks (camera binning), flattened (B, (n/b)^2)."""
    n = frames.shape[-1] // b * b
    f = frames[:, :n, :n].reshape(len(frames), n // b, b, n // b, b).sum(axis=(2, 4))
    return f.reshape(len(frames), -1)


def frame_rates(camera_fps: float, predict_s: float = 0.0) -> dict[str, float]:
    """Images per second: the all-optical imager (``camera_fps``) and a digital reconstruction."""
    if not math.isfinite(camera_fps) or camera_fps <= 0:
        raise ValueError(f"camera_fps must be a finite number > 0, got {camera_fps}")
    return {"optical_hz": float(camera_fps), "digital_hz": 1.0 / (1.0 / camera_fps + max(predict_s, 0.0))}
