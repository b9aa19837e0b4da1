"""Digital activations between measured layers, with the transpose that carries an error across them.

A measure-and-reload chip (:mod:`optics.diffractive.reload`) can apply a function to each
measured field before it reloads it (Xue et al., Nature 632, 280, 2024, their nonlinear
variant). Both activations here are phase-only, ``f(y) = y exp(i theta(|y|^2))``, so they
keep the modulus, and act elementwise with a fixed intensity scale ``I_s`` (normalised units,
the ``|y|^2`` of one pixel)::

    saturable_phase:  theta = pi |y|^2 / (|y|^2 + I_s)      (the paper's y exp(i pi / (1 + 1/|y|^2)) at I_s = 1)
    kerr:             theta = |y|^2 / I_s                   (the paper's y exp(i |y|^2) at I_s = 1)

**Wirtinger derivatives.** With ``theta' = d theta / d|y|^2`` and ``|y|^2 = y conj(y)``::

    df/dy       = exp(i theta) (1 + i theta' |y|^2)
    df/dconj(y) = i theta' y^2 exp(i theta)

so a perturbation maps as ``df = (df/dy) dy + (df/dconj y) conj(dy)`` (:meth:`Activation.linearised`,
real-linear, not complex-linear).

**The transpose, in the project's convention** (docs/design.md section 1.4). An error field
``eps_z`` at a field ``z`` is ``dL/dz`` (Wirtinger, no conjugation): for a real loss
``dL = 2 Re(sum eps_z dz)``, which is what ``e = (dL/dI) conj(y)`` is at the detector and what
``dL/dphi_l = -2 Im(u_l eps_l)`` reads. Across ``b = f(a)``::

    2 Re(eps_b db) = 2 Re(eps_b (df/dy) da + eps_b (df/dconj y) conj(da))
                   = 2 Re((df/dy eps_b + conj(df/dconj y) conj(eps_b)) da)

hence (:meth:`Activation.transpose`)::

    eps_a = (df/dy) eps_b + conj(df/dconj y) conj(eps_b)
          = exp(i theta) (1 + i theta' |a|^2) eps_b - i theta' conj(a)^2 exp(-i theta) conj(eps_b)

evaluated at the pre-activation field ``a`` of the data pass. It is the transpose of
:meth:`Activation.linearised` under the real pairing ``<x, y> = Re(sum x y)`` (no
conjugation): ``Re(sum eps J(da)) = Re(sum J^T(eps) da)``. (In the conjugate convention,
``eps = dL/dconj(z)``, the same map reads ``conj(df/dy) eps + (df/dconj y) conj(eps)``.)
The paper's code crosses its activation with the same two terms.

:class:`ActivationTrace` is one chip's activation with the points it was applied at in its
latest data pass, which its error pass needs. Pure array functions on NumPy or CuPy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optics.core.backend import array_namespace
from optics.core.validate import check_choice, check_positive

#: ``Activation.kind``: none (the identity) or one of the paper's two phase activations
ACTIVATIONS = ("none", "saturable_phase", "kerr")


@dataclass(frozen=True)
class Activation:
    """``f(y) = y exp(i theta(|y|^2 / intensity_scale))`` (module docstring), elementwise.

    ``intensity_scale``: ``I_s``, the ``|y|^2`` per pixel (normalised units) at which
    saturable_phase shifts by pi/2 and kerr by 1 rad."""

    kind: str = "none"
    intensity_scale: float = 1.0

    def __post_init__(self) -> None:
        check_choice("activation", self.kind, ACTIVATIONS)
        check_positive("activation intensity scale", self.intensity_scale)

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def phase(self, y):
        """``(theta, theta')`` (real arrays like ``|y|^2``): the phase and ``d theta / d|y|^2``."""
        xp = array_namespace(y)
        s = (y.real * y.real + y.imag * y.imag) / self.intensity_scale
        if self.kind == "saturable_phase":
            theta = math.pi * s / (s + 1.0)
            return theta, (math.pi / self.intensity_scale) / ((s + 1.0) * (s + 1.0))
        if self.kind == "kerr":
            return s, xp.full_like(s, 1.0 / self.intensity_scale)
        return xp.zeros_like(s), xp.zeros_like(s)

    def __call__(self, y):
        """``f(y)``, same shape and dtype."""
        if not self.active:
            return y
        xp = array_namespace(y)
        theta, _ = self.phase(y)
        return y * xp.exp(1j * theta).astype(y.dtype, copy=False)

    def derivatives(self, y):
        """``(df/dy, df/dconj(y))`` at ``y`` (Wirtinger; module docstring)."""
        xp = array_namespace(y)
        theta, dtheta = self.phase(y)
        rot = xp.exp(1j * theta).astype(y.dtype, copy=False)
        mag2 = y.real * y.real + y.imag * y.imag
        return rot * (1.0 + 1j * dtheta * mag2), 1j * dtheta * y * y * rot

    def linearised(self, y, dy):
        """``J(dy) = (df/dy) dy + (df/dconj y) conj(dy)``: the change of ``f`` at ``y`` to first order."""
        if not self.active:
            return dy
        d_y, d_conj = self.derivatives(y)
        return d_y * dy + d_conj * dy.conj()

    def transpose(self, y, eps):
        """``J^T(eps) = (df/dy) eps + conj(df/dconj y) conj(eps)``: the error at the input of ``f``
        from the error ``eps`` at its output, at the pre-activation field ``y``."""
        if not self.active:
            return eps
        d_y, d_conj = self.derivatives(y)
        return d_y * eps + (d_conj * eps).conj()


class ActivationTrace:
    """An activation applied between a chip's layers, remembering where it was applied.

    ``forward(layer, a)`` applies ``f`` to the field ``a`` arriving at (0-based) ``layer`` and
    keeps ``a``; ``backward(layer, eps)`` is ``J^T`` at that point. A chip's error pass follows
    its data pass of the same batch (``forward_only_step``), so ``clear()`` starts each data pass."""

    def __init__(self, activation: Activation):
        self.activation = activation
        self._points: dict[int, object] = {}

    def clear(self) -> None:
        self._points = {}

    def forward(self, layer: int, a):
        self._points[layer] = a
        return self.activation(a)

    def backward(self, layer: int, eps):
        point = self._points.get(layer)
        if point is None or tuple(point.shape) != tuple(eps.shape):
            got = "none" if point is None else tuple(point.shape)
            raise ValueError(
                f"the error pass crosses the activation at layer {layer + 1} with shape {tuple(eps.shape)}, "
                f"but the latest data pass left {got}: run the data pass of the same batch first"
            )
        return self.activation.transpose(point, eps)
