"""Physics-aware training (PAT; Wright et al., Nature 601, 549, 2022): forward on the chip, backward
through the digital twin.

PAT runs the data pass on the physical chip, takes the loss and the error at the output from
what the chip measured, and computes the gradient with the *digital model's* Jacobian instead
of a physical error pass. In Wright et al.'s notation, for a physical system ``f_p`` and its
differentiable model ``f_m``::

    dL/dtheta = [ d f_m / d theta (x, theta) ]^T  dL/dy |_{y = f_p(x, theta)}

Here the physical output is what the chip's camera detects, the intensity ``I = |y|^2`` at the
detector plane, the model is the twin (ideal optics, exact transpose ``P^T``;
:class:`optics.diffractive.chip.DigitalTwin`), and the vector-Jacobian product of the twin's
intensity ``I~ = |y~|^2``, in the notation of ``docs/design.md`` section 1, is::

    g         = dL/dI at the chip's measured I    (B, n, n) real, per unit fraction of the
                                                  sample's photons per pixel
    e~        = g * conj(y~)                      the twin's detector field y~, not the chip's
    u~_l      = twin data-pass field after layer l (the twin's own forward pass of the same input)
    eps~_l    = B~_l^T e~                         twin error pass (exact transpose, noise-free)
    dL/dphi_l = -2 Im( sum_b u~_l * eps~_l )      radians^-1, no conjugation
    dL/dA_l   =  2 Re( sum_b u~_l * eps~_l ) / A_l    per unit amplitude transmission

i.e. ``dL/dphi_l = sum_p g_p dI~_p/dphi_l``: the chip's loss slope ``g``, the twin's Jacobian.

Which fields, and why. Only the chip's detected intensity enters; every field of the gradient
(``u~_l``, ``y~``, ``eps~_l``) is the twin's. This is Wright et al.'s estimator: the physical
system is a black box whose measured output is the only physical quantity, and the backward
pass is the model's Jacobian at the model's own state; PAT needs neither holography nor any
internal measurement. The FFM paper's PAT baseline (Xue et al. 2024, code
``Fig2/PAT_learning.py``) also takes its forward fields from simulated propagation of the
input and propagates the error through the simulation; it forms the error with the
holographically measured output field ``conj(y_chip)``, after referencing the output phase to
a measured plane wave. Without such a phase calibration ``conj(y_chip)`` paired with the twin's
fields is incoherent: the hidden plane-distance errors alone shift the chip's output phase by
``k dz`` (~6e3 rad for 0.5 mm at 532 nm). Measured on the reference chip at level 1 (every
imperfection, noise off, 16 digits, phases drawn in [2.5, 3.8] rad), the cosine to the chip's
true gradient is 0.850 for this estimator, -0.761 with ``conj(y_chip)``, 0.019 for the chip's
measured taps ``u_l`` paired with the twin's ``eps~_l`` (a hybrid neither paper uses), 0.755
for in silico and 0.999 for FFM.
PAT and FFM see the same measured intensity and loss; FFM's gradient then comes from the
chip's own fields (its measured taps and forward-only error pass), PAT's from the ideal twin,
so PAT's is biased by the mismatch between twin and chip that FFM avoids, and exact when the
chip is ideal and noise-free.

Noise is keyed as FFM's data pass (``PassKey(round, 'data', samples)``), so PAT and FFM detect
the same camera frames in the same round; the simulator's data pass measures the internal taps
too, which PAT does not use. Pure: arrays in and out; ``chip`` and ``twin`` are the only
stateful arguments, both programmed with the same commanded phases.
"""

from __future__ import annotations

from optics.core.chip import OpticalChip
from optics.core.ffm import Objective, StepResult, error_field, in_parts, layer_gradients, step_result
from optics.core.measurement import PassKey


def physics_aware_step(
    chip: OpticalChip,
    twin: OpticalChip,
    inputs,
    targets,
    objective: Objective,
    round_index: int,
    samples,
    samples_per_pass: int | None = None,
) -> StepResult:
    """The PAT step (module docstring): data pass and loss on ``chip``, gradient through ``twin``.

    ``inputs`` (B, n, n) real amplitudes, ``targets`` labels (B,) or intensity images, ``samples``
    (B,) global sample ids that key the chip's measurement noise with ``round_index``;
    ``samples_per_pass`` as in :func:`optics.core.ffm.forward_only_step`. Loss, scores and
    correct counts are the chip's (measured); the gradients are the twin's Jacobian applied to
    the chip's output error.
    """
    return in_parts(
        lambda x, t, s: _one_pass(chip, twin, x, t, objective, round_index, s),
        inputs,
        targets,
        samples,
        samples_per_pass,
    )


def _one_pass(chip, twin, inputs, targets, objective, round_index, samples) -> StepResult:
    key = PassKey(round_index, "data", samples)
    measured = chip.data_pass(inputs, key).intensity  # the chip: its detected |y|^2 only
    loss, d_int, scores = objective(measured, chip.backend.asarray(targets), chip.detectors)
    model = twin.data_pass(inputs, key)  # u~_l and y~ (the twin is noiseless)
    be = twin.backend
    e = error_field(be.asarray(d_int).astype(be.real_dtype, copy=False), model.output)
    errors = twin.error_pass(e, PassKey(round_index, "error", samples))  # eps~_l, P^T
    grads = layer_gradients(twin, model.fields, errors.fields, objective.per_sample_grad_max)
    return step_result(grads, loss, chip.backend.to_numpy(scores), targets, objective)
