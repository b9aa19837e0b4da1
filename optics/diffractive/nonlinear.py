"""A diffractive network with a digital activation between its layers: the exact passes.

The twin and the simulator's oracle of a chip whose measured fields go through an
activation ``f`` (:mod:`optics.core.activations`) before the next layer (notation of
docs/design.md section 1; ``f`` acts on the fields arriving at layers 2..L, not on the input
plane nor on the detector field, as in Xue et al. 2024's nonlinear variant)::

    data pass:   a_1 = P_0 x,  b_1 = a_1,  b_l = f(a_l) (l >= 2),  u_l = t_l b_l,  a_{l+1} = P_l u_l,  y = a_{L+1}
    error pass:  eps_L = P_L^T e,  eps_{l-1} = P_{l-1}^T J_l^T(t_l eps_l)   (l = L..2)

``J_l^T`` is the activation's transpose at ``a_l`` (:meth:`Activation.transpose`), so the
gradient ``dL/dphi_l = -2 Im(sum_b u_l eps_l)`` is exact: ``eps_l`` is ``dL/du_l``. With
``to_input`` the error at the input plane is ``P_0^T (t_1 eps_1)`` as without an activation.
The points ``a_l`` are kept in an :class:`ActivationTrace` by the data pass for the error pass.
These passes are plain (no fused blocks): they serve the twin and the oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from optics.core.activations import Activation, ActivationTrace
from optics.core.propagation import Propagator, propagate, propagate_transpose
from optics.core.taps import Taps
from optics.diffractive import donn


def data_pass(inputs, transmissions, props: Sequence[Propagator | None], trace: ActivationTrace, first=None) -> Taps:
    """Taps ``u_1 .. u_L``, detector field ``y`` and ``|y|^2`` of ``inputs`` (B, n, n); ``first``:
    ``P_0 inputs`` already computed. ``trace`` is cleared and keeps the points ``a_2 .. a_L``."""
    be = props[-1].backend
    xp = be.xp
    n_layers = transmissions.shape[0]
    trace.clear()
    if first is not None:
        a = first
    else:
        a = inputs if props[0] is None else propagate(inputs, props[0])
    fields = xp.empty((n_layers,) + tuple(inputs.shape), dtype=be.complex_dtype)
    for layer in range(n_layers):
        if layer > 0:
            a = trace.forward(layer, a)
        fields[layer] = transmissions[layer] * a
        a = propagate(fields[layer], props[layer + 1])
    intensity = (a.real * a.real + a.imag * a.imag).astype(be.real_dtype, copy=False)
    return Taps(fields, a, intensity)


def error_pass(
    error, transmissions, props: Sequence[Propagator | None], trace: ActivationTrace, to_input=False
) -> Taps:
    """The exact (``P^T``) error pass of ``error`` (B, n, n) across the activation at the points of
    the latest :func:`data_pass`; returns ``eps_1 .. eps_L`` and, with ``to_input``, the error
    at the input plane as ``output``."""
    be = props[-1].backend
    n_layers = transmissions.shape[0]
    fields = be.xp.empty((n_layers,) + tuple(error.shape), dtype=be.complex_dtype)
    fields[n_layers - 1] = propagate_transpose(error, props[n_layers])
    for layer in range(n_layers - 1, 0, -1):
        fields[layer - 1] = propagate_transpose(
            trace.backward(layer, transmissions[layer] * fields[layer]), props[layer]
        )
    at_input = None
    if to_input:
        at_input = fields[0] * transmissions[0]
        if props[0] is not None:
            at_input = propagate_transpose(at_input, props[0])
    return Taps(fields, at_input)


def exact_error_pass(error, transmissions, props, trace: ActivationTrace | None, to_input=False) -> Taps:
    """:func:`error_pass` across the activation of ``trace``, or the plain ``P^T`` pass without one."""
    if trace is not None:
        return error_pass(error, transmissions, props, trace, to_input)
    return donn.error_pass(error, transmissions, props, transpose=True, to_input=to_input)


def reload_between(trace: ActivationTrace | None, commanded: Callable[[], object]):
    """A reload error pass's ``between`` (:mod:`optics.diffractive.reload`): ``E_l = J_l^T(t_l eps) / t_l``
    with the commanded ``t_l = commanded()[l]``, at the measured points of ``trace``; None without one."""
    if trace is None:
        return None
    t = commanded()
    return lambda layer, eps: trace.backward(layer, t[layer] * eps) / t[layer]


def describe(activation: Activation | None) -> dict:
    """The activation's entries of a chip's ``describe()`` (none without one)."""
    if activation is None:
        return {}
    return {"activation": activation.kind, "activation_intensity_scale": activation.intensity_scale}
