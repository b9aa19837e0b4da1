"""Focusing through a scattering medium: the objective, its FFM gradient and the metrics.

The set-up and its operators are in :mod:`optics.scattering.medium`. Camera frames ``I``
(B, n, n) are in fractions of the input power per pixel; phases in radians; lengths in
metres (``pitch`` per pixel). The FFM gradient with respect to SLM segment ``j``::

    e = (dL/dI) conj(y),   eps = M e (measured),   dL/dphi_j = -2 Im( sum_{p in segment j} u_p eps_p )

Metrics follow Vellekoop and Mosk (Opt. Lett. 32, 2309, 2007): enhancement
``eta = <I_target> / <I_background>``, ideal ``pi/4 (N - 1) + 1`` for N segments.
"""

from __future__ import annotations

import numpy as np

from optics.core.backend import array_namespace
from optics.core.ffm import error_field, phase_gradient
from optics.core.measurement import PassKey
from optics.core.propagation import propagate
from optics.core.validate import check_choice
from optics.scattering.medium import MediumSpec, ScatteringMedium, check_targets, segment_sum

FOCUS_LOSSES = ("intensity", "log_intensity", "fraction", "log_fraction")


def focus_loss(intensity, targets: np.ndarray, kind: str = "log_intensity"):
    """Loss of camera frames ``I`` (B, n, n) and ``dL/dI`` (B, n, n); mean over the batch.

    With the K target pixels ``I_k`` (fraction of the input power per pixel) and
    ``r_k = I_k`` ('intensity', 'log_intensity') or ``r_k = I_k / sum_p I_p`` ('fraction',
    'log_fraction', blind to the total): ``L = -(1/K) sum_k r_k`` or ``-(1/K) sum_k log r_k``
    (the log balances several spots). Maximising a fraction also dims the background.
    """
    check_choice("loss", kind, FOCUS_LOSSES)
    xp = array_namespace(intensity)
    b, k, rows, cols = intensity.shape[0], len(targets), targets[:, 0], targets[:, 1]
    total = intensity.sum(axis=(1, 2)) if kind.endswith("fraction") else xp.ones(b, intensity.dtype)
    spots = intensity[:, rows, cols]
    d = xp.zeros_like(intensity)
    if kind.startswith("log"):  # L = log S - mean_k log I_k (a noisy zero count is floored)
        spots = xp.maximum(spots, 1e-12 * intensity.sum(axis=(1, 2))[:, None] / intensity[0].size)
        loss = (xp.log(total) - xp.log(spots).mean(axis=1)).mean()
        d_spots, d_total = -1.0 / (k * spots), 1.0 / total
    else:  # L = -mean_k I_k / S
        r = spots.mean(axis=1) / total
        loss = -r.mean()
        d_spots, d_total = -1.0 / (k * total[:, None]), r / total
    if kind.endswith("fraction"):
        d += d_total.reshape(-1, 1, 1)
    d[:, rows, cols] += d_spots
    return float(loss), d / b


def focus_gradient(
    medium: ScatteringMedium, phases, targets, loss: str = "log_intensity", step: int = 0, exact: bool = False
) -> tuple[float, np.ndarray, object]:
    """FFM gradient of the focusing loss w.r.t. the segment phases (S, S), radians^-1.

    Data pass, ``e = (dL/dI) conj(y)``, forward-only error pass, ``-2 Im(U^T (u eps))``,
    all from measured fields (noise keyed by ``step``). ``exact=True``: the simulator's
    oracle, noise-free with the exact transpose ``M^T``. Returns (loss, gradient float64
    NumPy, measured camera frame (n, n) on the backend).
    """
    targets = check_targets(targets, medium.spec.n)
    phases = np.asarray(phases, dtype=np.float64)[None]
    be = medium.backend
    if exact:
        taps = medium.true_data_pass(phases)
    else:
        taps = medium.data_pass(phases, PassKey(step, "data", (0,)))
    value, d_int = focus_loss(taps.intensity, targets, loss)
    e = error_field(d_int.astype(be.real_dtype, copy=False), taps.output)
    eps = medium.true_error_pass(e) if exact else medium.error_pass(e, PassKey(step, "error", (0,)))
    g = segment_sum(phase_gradient(taps.fields, eps.fields)[0], medium.spec.segment_px)
    return value, be.to_numpy(g).astype(np.float64), taps.intensity[0]


def enhancement(frame: np.ndarray, targets: np.ndarray, exclusion_px: float, reference=None) -> float:
    """Vellekoop-Mosk enhancement ``eta = <I_target> / <I_background>``.

    Background: the mean of the camera pixels farther than ``exclusion_px`` from every
    target, in ``reference`` (the frame before optimisation, an estimate of the ensemble
    mean ``<I_0>`` of Vellekoop and Mosk 2007), or in ``frame`` itself when None (peak to
    background: an optimiser that also dims the total reflection raises it above ``eta``).
    """
    yy, xx = np.indices(frame.shape)
    dist = np.min([np.hypot(yy - r, xx - c) for r, c in targets], axis=0)
    ref = frame if reference is None else reference
    return float(frame[targets[:, 0], targets[:, 1]].mean() / ref[dist > exclusion_px].mean())


def spot_fwhm_px(frame: np.ndarray, target, upsample_by: int = 16) -> float:
    """Intensity FWHM (pixels) of the spot at ``target``: mean of the row and column cuts.

    The camera intensity is band-limited to ``2 NA / lambda`` (below the grid's Nyquist
    ``1 / (2 dx)``) and periodic on the cell, so Fourier resampling of a cut is exact.
    """
    from scipy.signal import resample

    widths = []
    for cut, c in ((frame[target[0], :], target[1]), (frame[:, target[1]], target[0])):
        fine = np.roll(resample(cut, cut.size * upsample_by), -c * upsample_by + cut.size * upsample_by // 2)
        mid = fine.size // 2
        half = fine[mid] / 2.0
        right = mid + int(np.argmax(fine[mid:] < half))
        left = mid - int(np.argmax(fine[mid::-1] < half))
        r_x = right - 1 + (fine[right - 1] - half) / (fine[right - 1] - fine[right])
        l_x = left + 1 - (fine[left + 1] - half) / (fine[left + 1] - fine[left])
        widths.append((r_x - l_x) / upsample_by)
    return float(np.mean(widths))


def diffraction_limited_pattern(medium: ScatteringMedium, targets: np.ndarray) -> np.ndarray:
    """Ideal camera image: an Airy spot ``|K delta_k|^2`` of peak 1 at every target (n, n)."""
    n = medium.spec.n
    delta = np.zeros((len(targets), n, n), dtype=np.complex128)
    delta[np.arange(len(targets)), targets[:, 0], targets[:, 1]] = 1.0
    psf = medium.backend.to_numpy(propagate(medium.backend.asarray(delta, medium.backend.complex_dtype), medium._pupil))
    spots = np.abs(psf) ** 2
    return (spots / spots.max(axis=(1, 2), keepdims=True)).sum(axis=0)


def camera_frame(medium: ScatteringMedium, phases) -> np.ndarray:
    """Noise-free camera image (n, n) float64 for segment phases (S, S) (simulator diagnostic)."""
    return medium.backend.to_numpy(medium.true_data_pass(phases).intensity[0]).astype(np.float64)


def reference_frame(medium: ScatteringMedium, patterns: int = 8, seed: int = 0) -> np.ndarray:
    """Mean noise-free frame over ``patterns`` random SLM phase patterns: the ensemble mean
    ``<I_0>`` against which Vellekoop and Mosk define the enhancement (diagnostic)."""
    rng = np.random.default_rng([int(seed), 0xEF])
    phases = rng.uniform(0, 2 * np.pi, (patterns, medium.spec.segments, medium.spec.segments))
    return medium.backend.to_numpy(medium.true_data_pass(phases).intensity.mean(axis=0)).astype(np.float64)


def focus_metrics(medium: ScatteringMedium, phases, targets, reference=None) -> dict[str, float]:
    """Noise-free evaluation of ``phases`` (simulator diagnostic, not an optical pass).

    ``enhancement`` (against ``reference``, default :func:`reference_frame`; see
    :func:`enhancement`), ``peak_to_background`` (same frame), ``psnr_db`` of the frame (scaled
    to unit mean target intensity) against :func:`diffraction_limited_pattern`, ``fwhm_m`` (mean over targets) next to
    ``airy_fwhm_m`` = 0.5145 lambda / NA and ``grain_m`` = lambda / (2 NA).
    """
    s, targets = medium.spec, check_targets(targets, medium.spec.n)
    frame, excl = camera_frame(medium, phases), exclusion_px(s)
    ideal = diffraction_limited_pattern(medium, targets)
    scaled = frame / frame[targets[:, 0], targets[:, 1]].mean()
    fwhm = np.mean([spot_fwhm_px(frame, t) for t in targets]) * s.pitch
    ref = reference_frame(medium) if reference is None else reference
    return {
        "enhancement": enhancement(frame, targets, excl, ref),
        "peak_to_background": enhancement(frame, targets, excl),
        "psnr_db": float(10 * np.log10(1.0 / np.mean((scaled - ideal) ** 2))),
        "fwhm_m": float(fwhm),
        "airy_fwhm_m": s.airy_fwhm,
        "grain_m": s.grain,
    }


def exclusion_px(spec: MediumSpec) -> float:
    """Radius around a target left out of the background: 3 Airy FWHM, in pixels."""
    return 3 * spec.airy_fwhm / spec.pitch


def phase_conjugation(medium: ScatteringMedium, target) -> tuple[np.ndarray, float]:
    """Oracle optimum for one target: phases ``-arg T_kj`` and ``(sum_j |T_kj|)^2 / sum_j |T_kj|^2``.

    ``T_kj = (U^T (a M^T delta_k))_j`` is the transmission-matrix row from segment j to
    target pixel k (one transpose pass; reads the hidden medium). The ratio is the
    enhancement of perfect phase-only focusing over the mean target intensity for random
    SLM phases; for i.i.d. circular Gaussian ``T_kj`` its mean is ``pi/4 (N - 1) + 1``.
    """
    r, c = check_targets(target, medium.spec.n)[0]
    delta = medium.backend.xp.zeros((1, medium.spec.n, medium.spec.n), dtype=medium.backend.complex_dtype)
    delta[0, r, c] = 1.0
    row = medium.backend.to_numpy(
        segment_sum(medium.apply(delta, transpose=True)[0] * medium.illumination, medium.spec.segment_px)
    ).astype(np.complex128)
    a = np.abs(row)
    return np.mod(-np.angle(row), 2 * np.pi), float(a.sum() ** 2 / (a**2).sum())
