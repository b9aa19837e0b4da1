"""Diffractive network physics: the data pass, the forward-only error pass, the transpose pass.

Notation of ``docs/design.md`` section 1. With ``t_l = A_l exp(i phi_l)`` and the
propagations ``P_0 .. P_L`` (input -> layer 1, ..., layer L -> detector)::

    data pass:   a_1 = P_0 x,  u_l = t_l a_l,  a_{l+1} = P_l u_l,  y = a_{L+1}
    error pass:  eps_L = Q_L e,  eps_{l-1} = Q_{l-1} (t_l eps_l)

where ``Q = P^T`` for the exact (transpose, reverse-mode) pass and ``Q = P`` for the
forward-only pass a chip performs physically. For symmetric optics the two coincide.
Fields are (B, n, n) complex arrays; taps are stacked as (L, B, n, n).
"""

from __future__ import annotations

from collections.abc import Sequence

from optics.core.propagation import Propagator, hop, propagate
from optics.core.taps import Taps


def data_pass(inputs, transmissions, props: Sequence[Propagator], first=None) -> Taps:
    """Propagate ``inputs`` (B, n, n) through L layers; ``transmissions`` is (L, n, n).

    ``props`` holds ``P_0 .. P_L`` (L + 1 propagators; ``P_0 = None``: the input is relay-imaged
    onto layer 1, as when a previous chip's output plane feeds this chip). ``first``, when
    given, is ``P_0 inputs`` already computed (a chip's input-plane cache). Returns taps
    ``u_1 .. u_L``, the detector field ``y`` and ``|y|^2``.

    Each hop modulates, stores the tap and loads the FFT workspace in one go and hands the
    workspace's centre to the next hop, so no field is copied between layers. On the CPU each
    block of samples goes through every layer while it is in cache (``Backend.map_blocks``).
    """
    n_layers = transmissions.shape[0]
    _check_props(props, n_layers)
    be = props[-1].backend
    xp, cdt = be.xp, be.complex_dtype
    fields = xp.empty((n_layers,) + tuple(inputs.shape), dtype=cdt)
    y = xp.empty(inputs.shape, dtype=cdt)
    intensity = xp.empty(inputs.shape, dtype=be.real_dtype)

    def run(block, worker):
        y[block] = _forward_block(inputs, transmissions, props, block, worker, first, fields)
        _intensity_into(xp, y[block], intensity[block])

    be.map_blocks(run, inputs.shape[0], _max_pad(props))
    return Taps(fields, y, intensity)


def _forward_block(inputs, transmissions, props, block, worker, first=None, fields=None):
    """One block's data pass: ``P_0`` (or ``first``), then every layer; returns the detector
    field (a workspace view). With ``fields`` (L, B, n, n) the taps ``u_l`` are stored there."""
    if first is not None:
        a = first[block]
    elif props[0] is None:
        a = inputs[block]
    else:
        a = hop(inputs[block], props[0], props[0].kernel, worker=worker)
    for layer in range(transmissions.shape[0]):
        p = props[layer + 1]
        store = None if fields is None else fields[layer, block]
        a = hop(a, p, p.kernel, mult=transmissions[layer], store=store, worker=worker)
    return a


def first_hop(inputs, props: Sequence[Propagator]):
    """``P_0 inputs`` (a new array), or ``inputs`` itself for a relay-imaged input."""
    return inputs if props[0] is None else propagate(inputs, props[0])


def _intensity_into(xp, y, out) -> None:
    """``out <- |y|^2`` in the real dtype (no complex temporary)."""
    if xp.__name__ == "cupy":
        _abs2(xp)(y, out)
        return
    re, im = y.real, y.imag
    xp.multiply(re, re, out=out)
    out += im * im


_ABS2: list = []


def _abs2(cp):
    if not _ABS2:
        _ABS2.append(
            cp.ElementwiseKernel("T y", "R out", "out = y.real() * y.real() + y.imag() * y.imag()", "ffm_abs2")
        )
    return _ABS2[0]


def error_pass(error, transmissions, props: Sequence[Propagator], transpose: bool, to_input: bool = False) -> Taps:
    """Send the error field ``e`` (B, n, n) from the detector back to layer 1.

    ``transpose=True`` applies ``P^T`` (exact reverse-mode); ``False`` applies ``P`` (what a
    chip does when the error is sent forward through the same optics, layer order reversed).
    Returns taps ``eps_1 .. eps_L``; with ``to_input`` also, as ``output``, the error at the
    input plane ``Q_0 (t_1 eps_1)``, which is the error a preceding chip continues from.
    """
    n_layers = transmissions.shape[0]
    _check_props(props, n_layers)
    be = props[-1].backend
    xp, cdt = be.xp, be.complex_dtype
    fields = xp.empty((n_layers,) + tuple(error.shape), dtype=cdt)
    at_input = xp.empty(error.shape, dtype=cdt) if to_input else None

    def kernel(p):
        return p.kernel_t if transpose else p.kernel

    def run(block, worker):
        p = props[n_layers]
        fields[n_layers - 1, block] = hop(error[block], p, kernel(p), worker=worker)
        for layer in range(n_layers - 1, 0, -1):
            p = props[layer]
            fields[layer - 1, block] = hop(fields[layer, block], p, kernel(p), mult=transmissions[layer], worker=worker)
        if to_input and props[0] is None:
            xp.multiply(fields[0, block], transmissions[0], out=at_input[block])
        elif to_input:
            at_input[block] = hop(fields[0, block], props[0], kernel(props[0]), mult=transmissions[0], worker=worker)

    be.map_blocks(run, error.shape[0], _max_pad(props))
    return Taps(fields, at_input)


def output_field(inputs, transmissions, props: Sequence[Propagator]):
    """Detector field only (inference), without storing the layer taps."""
    be = props[-1].backend
    y = be.xp.empty(inputs.shape, dtype=be.complex_dtype)

    def run(block, worker):
        y[block] = _forward_block(inputs, transmissions, props, block, worker)

    be.map_blocks(run, inputs.shape[0], _max_pad(props))
    return y


def _max_pad(props) -> int:
    return max(p.n_pad for p in props if p is not None)


def _check_props(props, n_layers: int) -> None:
    if len(props) != n_layers + 1:
        raise ValueError(f"need {n_layers + 1} propagators for {n_layers} layers, got {len(props)}")
