"""Fully forward mode (FFM) learning: error fields and gradients from two forward passes.

For a real loss ``L(I)`` of the detected intensity ``I = |y|^2`` (Xue et al., Nature 632,
280, 2024; ``docs/design.md`` section 1)::

    e         = (dL/dI) * conj(y)                     error field at the detector
    eps_l     = error-pass field arriving at layer l  (forward through the same optics)
    dL/dphi_l = -2 Im( sum_b u_l * eps_l )            radians^-1, no conjugation
    dL/dA_l   =  2 Re( sum_b u_l * eps_l ) / A_l      per unit amplitude transmission

``u_l`` is the data-pass field after layer ``l``. On a chip these are *measured* fields
and the phases are the ones the SLM realises. ``forward_only_step`` is the FFM step on
any chip; on a digital twin (:class:`optics.diffractive.chip.DigitalTwin`) it is exactly in-silico backprop
(the twin's error pass is the exact transpose). Functions here are pure: arrays in,
arrays out; the chip is the only stateful argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optics.core.backend import array_namespace
from optics.core.chip import NoiseFreeOracle, OpticalChip
from optics.core.detectors import Detectors, detector_scores, scores_transpose
from optics.core.losses import LOSSES, mse_to_target, scaled_mse_to_pattern, softmax_cross_entropy
from optics.core.measurement import PassKey
from optics.core.validate import check_choice, check_positive

LABEL_LOSSES = ("cross_entropy", "scaled_mse")  # losses whose targets are class labels (accuracy is counted)


@dataclass(frozen=True)
class Objective:
    """Loss on detected intensity. ``kind`` 'cross_entropy' (softmax of detector energies /
    ``temperature``, targets are integer labels), 'mse' (targets are intensity images) or
    'scaled_mse' (targets are labels: MSE to the label's pattern, 1 on its detector region and 0
    elsewhere, after a least-squares scale; :func:`optics.core.losses.scaled_mse_to_pattern`).

    ``per_sample_grad_max`` (None: off): each sample's gradient of each layer is rescaled to this
    maximum absolute value before the batch mean (Xue et al. 2024's deep network uses 0.02);
    :func:`layer_gradients`."""

    kind: str = "cross_entropy"
    temperature: float = 0.003  # in units of the input power; ffm-train's trainer.temperature reads it
    per_sample_grad_max: float | None = None  # radians^-1; ffm-train's trainer.per_sample_grad_max

    def __post_init__(self) -> None:
        check_choice("loss", self.kind, LOSSES)
        check_positive("temperature", self.temperature)
        if self.per_sample_grad_max is not None:
            check_positive("per_sample_grad_max", self.per_sample_grad_max)

    def __call__(self, intensity, targets, det: Detectors):
        """Returns ``(loss, dL/dI (B, n, n), scores (B, C))``."""
        scores = detector_scores(intensity, det)
        if self.kind == "mse":
            loss, d_int = mse_to_target(intensity, targets)
            return loss, d_int, scores
        if self.kind == "scaled_mse":
            loss, d_int = scaled_mse_to_pattern(intensity, target_patterns(targets, det, intensity.dtype))
            return loss, d_int, scores
        loss, d_scores, _ = softmax_cross_entropy(scores, targets, self.temperature)
        return loss, scores_transpose(d_scores, det), scores


def target_patterns(labels, det: Detectors, dtype):
    """(B, *plane) target intensity patterns: 1 on each label's detector region, 0 elsewhere."""
    xp = array_namespace(det.masks)
    labels = xp.asarray(labels)
    onehot = xp.zeros((labels.shape[0], det.masks.shape[1]), dtype=dtype)
    onehot[xp.arange(labels.shape[0]), labels] = 1
    return scores_transpose(onehot, det).astype(dtype, copy=False)


def error_field(d_intensity, output_field):
    """``e = (dL/dI) * conj(y)``: the phase-conjugated output weighted by the intensity error."""
    return d_intensity * output_field.conj()


def phase_gradient(data_fields, error_fields, backend=None):
    """``dL/dphi_l = -2 Im(sum_b u_l eps_l)`` for taps (L, B, *plane); returns (L, *plane) real.

    With a NumPy ``backend`` the batch sum is split by pixel among its worker threads."""
    xp = array_namespace(data_fields)
    if (
        xp.__name__ == "cupy"
        and data_fields.ndim >= 3
        and data_fields.flags.c_contiguous
        and error_fields.flags.c_contiguous
        and data_fields.dtype == error_fields.dtype
    ):
        return _cupy_phase_gradient(xp, data_fields, error_fields)
    return -2.0 * batch_product(data_fields, error_fields, backend).imag


def _cupy_phase_gradient(cp, u, eps):
    """One fused pass on the GPU: each thread sums its pixel over the batch (coalesced reads)."""
    from optics.core.backend import _cupy_kernels

    n_layers, batch, plane = u.shape[0], u.shape[1], u.shape[2:]
    npix = int(np.prod(plane)) if plane else 1
    out = cp.empty((n_layers,) + tuple(plane), dtype=u.real.dtype)
    _cupy_kernels()["phase_grad"](u, eps, batch, npix, out)
    return out


def batch_product(u, eps, backend=None):
    """``sum_b u_l eps_l`` (L, *plane) complex for taps (L, B, *plane), no conjugation."""
    xp = array_namespace(u)
    if backend is None or backend.name != "numpy" or u.ndim < 3 or backend.fft_threads == 1:
        return xp.einsum("lb...,lb...->l...", u, eps)
    n_layers, batch = u.shape[:2]
    u2, e2 = u.reshape(n_layers, batch, -1), eps.reshape(n_layers, batch, -1)
    out = xp.empty((n_layers, u2.shape[2]), dtype=xp.result_type(u, eps))

    def run(part, worker):
        out[:, part] = xp.einsum("lbp,lbp->lp", u2[:, :, part], e2[:, :, part])

    backend.map_split(run, u2.shape[2])
    return out.reshape((n_layers,) + u.shape[2:])


@dataclass
class StepResult:
    """One step's gradients (NumPy, float64) and metrics from measured quantities."""

    loss: float
    n_samples: int
    n_correct: int
    grad_phase: np.ndarray
    grad_amplitude: np.ndarray | None
    scores: np.ndarray


def forward_only_step(
    chip: OpticalChip,
    inputs,
    targets,
    objective: Objective,
    round_index: int,
    samples,
    samples_per_pass: int | None = None,
) -> StepResult:
    """Data pass, error field, error pass, gradients: the FFM step on ``chip``.

    ``inputs`` (B, n, n) real amplitudes, ``targets`` labels (B,) or intensity images,
    ``samples`` (B,) global sample ids that key the measurement noise with ``round_index``.

    ``samples_per_pass`` (memory-lean mode): the chip measures at most this many samples per
    pass, so only their 2 L taps are held at once. The loss is a batch mean, so with parts of
    ``B_m`` samples ``L = sum_m (B_m / B) L_m`` and the gradients add the same way; noise is
    keyed per sample, so the step equals the whole-batch step up to float rounding.
    """

    def one_pass(x, t, s):
        return _one_pass_step(chip, x, t, objective, round_index, s)

    return in_parts(one_pass, inputs, targets, samples, samples_per_pass)


def in_parts(one_pass, inputs, targets, samples, samples_per_pass: int | None) -> StepResult:
    """``one_pass(inputs, targets, samples) -> StepResult`` on the whole batch, or on parts of at most
    ``samples_per_pass`` samples combined into the batch's step (the memory-lean mode)."""
    samples = tuple(int(s) for s in samples)
    if len(samples) != inputs.shape[0]:
        raise ValueError(f"samples has {len(samples)} ids for a batch of {inputs.shape[0]}")
    if samples_per_pass is not None and samples_per_pass < 1:
        raise ValueError(f"samples_per_pass must be >= 1, got {samples_per_pass}; or None for the whole batch")
    if samples_per_pass is None or samples_per_pass >= len(samples):
        return one_pass(inputs, targets, samples)
    k = samples_per_pass
    parts = range(0, len(samples), k)
    return _combine([one_pass(inputs[s : s + k], targets[s : s + k], samples[s : s + k]) for s in parts])


def _one_pass_step(chip, inputs, targets, objective, round_index, samples) -> StepResult:
    taps = chip.data_pass(inputs, PassKey(round_index, "data", samples))
    loss, e, scores = detector_error(chip, taps, targets, objective)
    etaps = chip.error_pass(e, PassKey(round_index, "error", samples))
    return _result(chip, taps.fields, etaps.fields, loss, scores, targets, objective)


def _combine(parts: list[StepResult]) -> StepResult:
    """One batch's step from steps on its parts, each a mean over its own samples."""
    total = sum(p.n_samples for p in parts)
    w = [p.n_samples / total for p in parts]
    amp = None if parts[0].grad_amplitude is None else sum(wi * p.grad_amplitude for wi, p in zip(w, parts))
    return StepResult(
        float(sum(wi * p.loss for wi, p in zip(w, parts))),
        total,
        sum(p.n_correct for p in parts),
        sum(wi * p.grad_phase for wi, p in zip(w, parts)),
        amp,
        np.concatenate([p.scores for p in parts]),
    )


def detector_error(chip: OpticalChip, taps, targets, objective: Objective):
    """Loss on the detected intensity and the error field ``e = (dL/dI) conj(y)`` to send back.

    Returns ``(loss, e (B, n, n) on the chip's backend, scores (B, C))``."""
    be = chip.backend
    loss, d_int, scores = objective(taps.intensity, be.asarray(targets), chip.detectors)
    return loss, error_field(d_int.astype(be.real_dtype, copy=False), taps.output), scores


def layer_gradients(chip: OpticalChip, data_fields, error_fields, per_sample_max=None) -> dict[str, np.ndarray]:
    """``{'phase': dL/dphi, ['amplitude': dL/dA]}`` of the chip's own layers (NumPy float64).

    ``per_sample_max`` (:attr:`Objective.per_sample_grad_max`): each sample's gradient of each
    layer rescaled to that maximum before the batch mean (:func:`rescaled_sample_mean`)."""
    be = chip.backend
    if per_sample_max is not None:
        out = {"phase": rescaled_sample_mean(data_fields, error_fields, per_sample_max, "phase")}
        if chip.amplitudes is not None:
            amp = rescaled_sample_mean(data_fields, error_fields, per_sample_max, "amplitude", chip.amplitudes)
            out["amplitude"] = amp
        return {k: be.to_numpy(v).astype(np.float64) for k, v in out.items()}
    if chip.amplitudes is None:
        return {"phase": be.to_numpy(phase_gradient(data_fields, error_fields, be)).astype(np.float64)}
    prod = batch_product(data_fields, error_fields, be)  # shared by both gradients
    return {
        "phase": be.to_numpy(-2.0 * prod.imag).astype(np.float64),
        "amplitude": be.to_numpy(2.0 * prod.real / chip.amplitudes).astype(np.float64),
    }


def rescaled_sample_mean(u, eps, max_value: float, kind: str = "phase", amplitudes=None):
    """``(1/B) sum_b c_lb g_lb`` with each sample's layer gradient rescaled to a maximum of ``max_value``.

    ``g_lb = -2 Im(u_lb eps_lb)`` (``kind='phase'``) or ``2 Re(u_lb eps_lb) / A_l``
    ('amplitude') for taps (L, B, *plane), and ``c_lb = max_value / max_p |g_lb|`` (0 for a
    sample with no gradient). The rescale drops each sample's gradient norm, so it does not
    depend on the loss's ``1/B``; a batch measured in parts combines to the same mean."""
    xp = array_namespace(u)
    n_layers, batch = u.shape[:2]
    axes = tuple(range(1, u.ndim - 1))
    out = None
    for layer in range(n_layers):
        prod = u[layer] * eps[layer]
        g = -2.0 * prod.imag if kind == "phase" else 2.0 * prod.real / amplitudes[layer]
        peak = xp.abs(g).max(axis=axes, keepdims=True)
        g = g * xp.where(peak > 0, max_value / xp.where(peak > 0, peak, 1), 0)
        if out is None:
            out = xp.empty((n_layers,) + tuple(g.shape[1:]), dtype=g.dtype)
        out[layer] = g.sum(axis=0) / batch
    return out


def true_gradient(chip: NoiseFreeOracle, inputs, targets, objective: Objective) -> StepResult:
    """Simulator oracle: exact gradient w.r.t. the realised phases, noise-free, via ``P^T``."""
    taps = chip.true_data_pass(inputs)
    loss, e, scores = detector_error(chip, taps, targets, objective)
    etaps = chip.true_error_pass(e)
    return _result(chip, taps.fields, etaps.fields, loss, scores, targets, objective)


def _result(chip, u, eps, loss, scores, targets, objective) -> StepResult:
    grads = layer_gradients(chip, u, eps, objective.per_sample_grad_max)
    return step_result(grads, loss, chip.backend.to_numpy(scores), targets, objective)


def step_result(grads: dict, loss, scores, targets, objective: Objective) -> StepResult:
    """A step's result from its layer gradients (:func:`layer_gradients`) and detector scores (B, C)."""
    scores_np = np.asarray(scores, dtype=np.float64)
    correct = 0
    if objective.kind in LABEL_LOSSES:
        correct = int((scores_np.argmax(axis=1) == np.asarray(targets)).sum())
    return StepResult(loss, scores_np.shape[0], correct, grads["phase"], grads.get("amplitude"), scores_np)


def gradient_fidelity(measured: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Cosine and norm-wise relative error of a measured gradient against the true one."""
    m, t = np.ravel(measured).astype(np.float64), np.ravel(true).astype(np.float64)
    nt, nm = np.linalg.norm(t), np.linalg.norm(m)
    cosine = float(m @ t / (nm * nt)) if nm > 0 and nt > 0 else float("nan")
    rel = float(np.linalg.norm(m - t) / nt) if nt > 0 else float("nan")
    return {"cosine": cosine, "relative_error": rel}


def measure_fidelity(
    chip: NoiseFreeOracle, inputs, targets, objective: Objective, round_index: int, samples
) -> dict[str, float]:
    """Gradient fidelity of the chip's FFM step against its true gradient (diagnostic)."""
    ffm = forward_only_step(chip, inputs, targets, objective, round_index, samples)
    return gradient_fidelity(ffm.grad_phase, true_gradient(chip, inputs, targets, objective).grad_phase)
