"""Diffractive network physics: the data pass, the forward-only error pass, the transpose pass.

Notation of ``shared/design.md`` section 1. With ``t_l = A_l exp(i phi_l)`` and the
propagations ``P_0 .. P_L`` (input -> layer 1, ..., layer L -> detector)::

    data pass:   a_1 = P_0 x,  u_l = t_l a_l,  a_{l+1} = P_l u_l,  y = a_{L+1}
    error pass:  eps_L = Q_L e,  eps_{l-1} = Q_{l-1} (t_l eps_l)

where ``Q = P^T`` for the exact (transpose, reverse-mode) pass and ``Q = P`` for the
forward-only pass a chip performs physically. For symmetric optics the two coincide.
Fields are (B, n, n) complex arrays; taps are stacked as (L, B, n, n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .propagation import Propagator, hop, propagate, propagate_transpose


@dataclass(eq=False)
class Taps:
    """Fields measured in one pass.

    ``fields`` (L, B, n, n): after modulation layer l (data pass: ``u_l``) or the error
    field arriving at layer l (error pass: ``eps_l``). Data pass only: ``output`` (B, n, n)
    the complex field at the detector and ``intensity`` (B, n, n) the detected intensity.
    """

    fields: object
    output: object = None
    intensity: object = None


def data_pass(inputs, transmissions, props: Sequence[Propagator], first=None) -> Taps:
    """Propagate ``inputs`` (B, n, n) through L layers; ``transmissions`` is (L, n, n).

    ``props`` holds ``P_0 .. P_L`` (L + 1 propagators; ``P_0 = None``: the input is relay-imaged
    onto layer 1, as when a previous chip's output plane feeds this chip). ``first``, when
    given, is ``P_0 inputs`` already computed (a chip's input-plane cache). Returns taps
    ``u_1 .. u_L``, the detector field ``y`` and ``|y|^2``.

    Each hop modulates, stores the tap and loads the FFT workspace in one go and hands the
    workspace's centre to the next hop, so no field is copied between layers.
    """
    n_layers = transmissions.shape[0]
    _check_props(props, n_layers)
    xp = _xp(props)
    fields = xp.empty((n_layers,) + tuple(inputs.shape), dtype=props[-1].backend.complex_dtype)
    if first is not None:
        a = first
    elif props[0] is None:
        a = inputs
    else:
        a = hop(inputs, props[0], props[0].kernel)
    for layer in range(n_layers):
        a = hop(a, props[layer + 1], props[layer + 1].kernel, mult=transmissions[layer], store=fields[layer])
    y = a.copy()
    return Taps(fields, y, _intensity(xp, y))


def first_hop(inputs, props: Sequence[Propagator]):
    """``P_0 inputs`` (a new array), or ``inputs`` itself for a relay-imaged input."""
    return inputs if props[0] is None else propagate(inputs, props[0])


def _intensity(xp, y):
    """``|y|^2`` in the real dtype (one pass, no complex temporary)."""
    if xp.__name__ == "cupy":
        return _abs2(xp)(y)
    re = y.real
    out = re * re
    im = y.imag
    out += im * im
    return out


_ABS2: list = []


def _abs2(cp):
    if not _ABS2:
        _ABS2.append(cp.ElementwiseKernel("T y", "R out", "out = y.real() * y.real() + y.imag() * y.imag()",
                                          "ffm_abs2"))
    k = _ABS2[0]
    return lambda y: k(y, cp.empty(y.shape, dtype=y.real.dtype))


def error_pass(error, transmissions, props: Sequence[Propagator], transpose: bool,
               to_input: bool = False) -> Taps:
    """Send the error field ``e`` (B, n, n) from the detector back to layer 1.

    ``transpose=True`` applies ``P^T`` (exact reverse-mode); ``False`` applies ``P`` (what a
    chip does when the error is sent forward through the same optics, layer order reversed).
    Returns taps ``eps_1 .. eps_L``; with ``to_input`` also, as ``output``, the error at the
    input plane ``Q_0 (t_1 eps_1)``, which is the error a preceding chip continues from.
    """
    n_layers = transmissions.shape[0]
    _check_props(props, n_layers)
    xp = _xp(props)
    fields = xp.empty((n_layers,) + tuple(error.shape), dtype=props[-1].backend.complex_dtype)

    def kernel(p):
        return p.kernel_t if transpose else p.kernel

    p = props[n_layers]
    fields[n_layers - 1] = hop(error, p, kernel(p))
    for layer in range(n_layers - 1, 0, -1):
        p = props[layer]
        fields[layer - 1] = hop(fields[layer], p, kernel(p), mult=transmissions[layer])
    at_input = None
    if to_input:
        at_input = fields[0] * transmissions[0] if props[0] is None else \
            hop(fields[0], props[0], kernel(props[0]), mult=transmissions[0]).copy()
    return Taps(fields, at_input)


def output_field(inputs, transmissions, props: Sequence[Propagator]):
    """Detector field only (inference), without storing the layer taps."""
    a = inputs if props[0] is None else hop(inputs, props[0], props[0].kernel)
    for layer in range(transmissions.shape[0]):
        a = hop(a, props[layer + 1], props[layer + 1].kernel, mult=transmissions[layer])
    return a.copy()


def _check_props(props, n_layers: int) -> None:
    if len(props) != n_layers + 1:
        raise ValueError(f"need {n_layers + 1} propagators for {n_layers} layers, got {len(props)}")


def _xp(props):
    return props[-1].backend.xp
