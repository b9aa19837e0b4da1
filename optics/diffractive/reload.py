"""The measure-and-reload model: every hop is its own shot (Xue et al., Nature 632, 280, 2024).

A measure-and-reload chip (the paper's free-space rig) does not carry light from layer to
layer. Each hop loads a field onto a loader (an amplitude SLM for ``|a|`` and a phase SLM
for ``arg a``, both quantised to the loader's levels), the layer's SLM multiplies it by
``t_l``, free space carries it to a camera, the camera measures it holographically, and the
*measured* field is what the next hop loads. With the loader normalised to a peak of 1
(``c = max |a|``, restored digitally after the measurement)::

    load(a)        = c * A_q(|a| / c) * exp(i Q(arg a))       A_q, Q: the loader's levels
    a_hat_{l+1}    = M_l( P_l ( t_l * load(a_hat_l) ) )       M_l: the camera of hop l
    u_hat_l        = t_l^cmd * a_hat_l                        the tap the FFM gradient uses

``t_l`` is the transmission the SLM realises, ``t_l^cmd = A_l exp(i phi_l)`` the commanded
one: the rig never sees the field right after its SLM, so the tap is computed from the
field it measured and the phases it wrote. Each shot spends its own photon budget for the
field it loads, so the camera noise of hop ``l`` is that of a measurement of power
``P_l = sum |t_l load(a_hat_l)|^2`` (normalised units), and noise compounds from hop to
hop (docs/design.md section 4). The error pass runs the same hops in reverse layer order,
starting from the error field (no layer multiplies the first error hop).

Noise keys: the field arriving at layer ``l`` is keyed by tap ``l``; the detector field by
``Tap.DETECTOR``; an error pass's field at the input plane by ``Tap.INPUT_ERROR``.

**A digital activation between hops** (``between``; :mod:`optics.core.activations`). The rig
may map each measured field arriving at layers 2..L through ``f`` before reloading it, so
``u_hat_l = t_l^cmd f(a_hat_l)``. The error pass then crosses ``f``'s transpose digitally at
the measured points ``a_hat_l``: what it needs after layer ``l`` is ``J_l^T(t_l eps_hat_l)``,
but ``t_l`` acts *before* ``J_l^T``, which does not commute with it (its ``conj(eps)`` term).
The rig applies the mask it knows, crosses ``J_l^T``, and divides the mask out again, loading

    E_l = J_l^T(t_l^cmd eps_hat_l) / t_l^cmd

so that the layer's SLM multiplies ``t_l`` back optically: exact when the realised
transmission equals the commanded one, and for ``f`` the identity the same hops as without
an activation (the chip's ``between`` callbacks; ``None``: no activation, nothing changes).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from optics.core.propagation import propagate
from optics.core.taps import Taps

#: ``measure(field, tap, power)``: the camera of one hop, measuring ``field`` (B, n, n) in place,
#: sent with ``power`` (B, 1, 1) in normalised units
Measure = Callable[..., None]
#: ``between(layer, field)``: what a hop loads, from the field measured at 0-based ``layer``
Between = Callable[[int, object], object]


def loader_levels(quant_step_rad: float, backend):
    """``load(a)`` of the docstring as a function of a (B, n, n) complex field ``a``.

    The amplitude SLM sits between crossed polarisers: amplitude ``sin(psi / 2)`` for a
    written phase ``psi = 2 arcsin(|a| / c)`` in [0, pi], quantised like the phase SLM to
    ``quant_step_rad`` (0: continuous)."""
    xp = backend.xp

    def quantised(phase):
        if quant_step_rad <= 0:
            return phase
        return xp.floor(phase / quant_step_rad + 0.5) * quant_step_rad

    def load(a):
        mag = xp.abs(a)
        c = xp.maximum(mag.reshape(a.shape[0], -1).max(axis=1), 1e-30).reshape(-1, 1, 1)
        amp = xp.sin(quantised(2.0 * xp.arcsin(xp.clip(mag / c, 0.0, 1.0))) / 2.0)
        phase = quantised(xp.angle(a))
        return (c * amp * xp.exp(1j * phase)).astype(backend.complex_dtype, copy=False)

    return load


def power(field, backend):
    """``sum_pixels |field|^2`` per sample, (B, 1, 1) real."""
    re, im = field.real, field.imag
    return (re * re + im * im).reshape(field.shape[0], -1).sum(axis=1).reshape(-1, 1, 1)


def _shot(loaded, mult, prop, measure: Measure, tap, backend):
    """One hop: ``M(P(mult * loaded))`` measured as tap ``tap``; returns the measured field."""
    sent = loaded if mult is None else loaded * mult
    out = propagate(sent, prop)
    measure(out, tap, backend.xp.sqrt(power(sent, backend)))
    return out


def data_pass(
    inputs, realised, commanded, props, measure: Measure, load, detector_tap, backend, between: Between | None = None
) -> Taps:
    """The reload data pass of ``inputs`` (B, n, n) through L layers (``realised``/``commanded``
    (L, n, n) transmissions, ``props`` ``P_0 .. P_L`` with ``P_0 = None`` for a relay-fed
    chip). Returns the taps ``u_hat_l``, the measured detector field and its ``power`` (B, 1, 1)
    as ``intensity`` (the caller measures the detected intensity). ``between(layer, a)``: the
    field loaded for 0-based ``layer >= 1`` from the measured ``a`` (an activation)."""
    xp = backend.xp
    n_layers = realised.shape[0]
    a = inputs if props[0] is None else _shot(inputs, None, props[0], measure, 0, backend)
    fields = xp.empty((n_layers,) + tuple(inputs.shape), dtype=backend.complex_dtype)
    sent_power = None
    for layer in range(n_layers):
        if between is not None and layer > 0:
            a = between(layer, a)
        fields[layer] = commanded[layer] * a
        sent = realised[layer] * load(a)
        sent_power = power(sent, backend)
        out = propagate(sent, props[layer + 1])
        tap = detector_tap if layer == n_layers - 1 else layer + 1
        measure(out, tap, xp.sqrt(sent_power))
        a = out
    return Taps(fields, a, sent_power)


def error_pass(
    error,
    realised,
    props,
    measure: Measure,
    load,
    input_tap,
    backend,
    to_input: bool = False,
    first=None,
    between: Between | None = None,
) -> Taps:
    """The reload error pass of ``error`` (B, n, n): forward through the same hops, layer order
    reversed. Returns ``eps_hat_1 .. eps_hat_L`` and, with ``to_input``, the error at the input
    plane (measured through ``P_0``, or ``t_1 eps_hat_1`` for a relay-fed chip). ``first``: what
    the first hop's light crosses besides free space (a time-multiplexed rig's one SLM, showing
    no design phase: its screen; None: nothing, the error is shown at the output plane).
    ``between(layer, eps)``: the field loaded for the hop through 0-based ``layer >= 1`` from
    the measured error ``eps`` arriving there (``E_l`` of the module docstring)."""
    xp = backend.xp
    n_layers = realised.shape[0]
    fields = xp.empty((n_layers,) + tuple(error.shape), dtype=backend.complex_dtype)
    fields[n_layers - 1] = _shot(load(error), first, props[n_layers], measure, n_layers - 1, backend)
    for layer in range(n_layers - 1, 0, -1):
        src = fields[layer] if between is None else between(layer, fields[layer])
        fields[layer - 1] = _shot(load(src), realised[layer], props[layer], measure, layer - 1, backend)
    at_input = None
    if to_input and props[0] is None:
        at_input = fields[0] * realised[0]
    elif to_input:
        at_input = _shot(load(fields[0]), realised[0], props[0], measure, input_tap, backend)
    return Taps(fields, at_input)


def hops(n_layers: int, relay_input: bool) -> int:
    """Measured shots per data pass: one per hop (``L``, plus the input hop when not relay-fed)."""
    return n_layers + (0 if relay_input else 1)


def photons_per_pass(photons_per_shot: float, n_layers: int, relay_input: bool) -> float:
    """Photons a reload pass spends per sample: one budget per measured hop."""
    return photons_per_shot * hops(n_layers, relay_input) if math.isfinite(photons_per_shot) else math.inf
