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

from .propagation import Propagator, propagate, propagate_transpose


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


def data_pass(inputs, transmissions, props: Sequence[Propagator]) -> Taps:
    """Propagate ``inputs`` (B, n, n) through L layers; ``transmissions`` is (L, n, n).

    ``props`` holds ``P_0 .. P_L`` (L + 1 propagators; ``P_0 = None``: the input is relay-imaged
    onto layer 1, as when a previous chip's output plane feeds this chip). Returns taps
    ``u_1 .. u_L``, the detector field ``y`` and ``|y|^2``.
    """
    n_layers = transmissions.shape[0]
    _check_props(props, n_layers)
    xp = _xp(props)
    fields = xp.empty((n_layers,) + tuple(inputs.shape), dtype=props[-1].backend.complex_dtype)
    a = _first_hop(inputs, props[0], propagate)
    for layer in range(n_layers):
        xp.multiply(a, transmissions[layer], out=fields[layer])
        a = propagate(fields[layer], props[layer + 1])
    return Taps(fields, a, (a * a.conj()).real)


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
    hop = propagate_transpose if transpose else propagate
    fields = xp.empty((n_layers,) + tuple(error.shape), dtype=props[-1].backend.complex_dtype)
    fields[n_layers - 1] = hop(error, props[n_layers])
    for layer in range(n_layers - 1, 0, -1):
        fields[layer - 1] = hop(fields[layer] * transmissions[layer], props[layer])
    at_input = _first_hop(fields[0] * transmissions[0], props[0], hop) if to_input else None
    return Taps(fields, at_input)


def output_field(inputs, transmissions, props: Sequence[Propagator]):
    """Detector field only (inference), without storing the layer taps."""
    a = _first_hop(inputs, props[0], propagate)
    for layer in range(transmissions.shape[0]):
        a = propagate(a * transmissions[layer], props[layer + 1])
    return a


def _check_props(props, n_layers: int) -> None:
    if len(props) != n_layers + 1:
        raise ValueError(f"need {n_layers + 1} propagators for {n_layers} layers, got {len(props)}")


def _first_hop(field, prop: Propagator | None, hop):
    """``P_0`` from the input plane to layer 1, or the identity for a relay-imaged input."""
    return field if prop is None else hop(field, prop)


def _xp(props):
    return props[-1].backend.xp
