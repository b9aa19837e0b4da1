"""Integrated MZI mesh chips: a Clements mesh in a reflective double pass, trained with FFM.

**Mesh.** N waveguide modes; N columns of 2x2 Mach-Zehnder interferometers (Clements et
al., Optica 3, 1460, 2016): column k couples modes (j, j+1) for j = k mod 2, k mod 2 + 2, ...
One MZI is ``K(kb) diag(e^{i theta}, 1) K(ka) diag(e^{i phi}, 1)`` with the directional
coupler ``K(kappa) = [[cos kappa, i sin kappa], [i sin kappa, cos kappa]]`` (kappa = pi/4:
50:50), external phase ``phi`` and internal phase ``theta`` (radians) on the upper arm,
then an output phase screen on all modes. Written in the diffractive chip's layer form
(``docs/design.md`` section 1) the single pass is::

    A = P_L T_L ... P_1 T_1 P_0,   T_l = diag(a_l exp(i phi_l)),   L = 2N + 1 layers

with ``phi_l`` (N,) the realised phases of shifter layer l (column k: layer 2k its
external, 2k+1 its internal phases; layer 2N the output screen), ``a_l`` the waveguide
loss, and the fixed coupler columns ``P_{2k+1} = K_a(k)``, ``P_{2k+2} = K_b(k)`` (the first and
second coupler of column k), ``P_0 = P_L = I``. ``shifter_mask`` (L, N) marks the N^2 physical
shifters (upper arms and the screen); commanded phases elsewhere are ignored.

**Why the error pass needs a symmetric arrangement.** FFM sends the error field
``e = (dL/dI) conj(y)`` through the optics the same way as the data, and needs the
transpose ``A^T e`` (docs/design.md section 1). A single pass gives ``A e`` instead, and
``A != A^T``: the mesh is a product in a fixed order, ``(P_2 T P_1)^T = P_1^T T P_2^T``,
and neither a product of coupler columns nor one MZI with its external
phase, ``K D_theta K D_phi``, equals its transpose. Sending the error backwards from the
output ports would give ``A^T`` by reciprocity (Hughes et al., Optica 5, 864, 2018) but
needs sources and coherent receivers at both ends. Here the chip is used in a
**reflective double pass**: light enters the N input ports, crosses the mesh, meets a
mirror ``R = diag(r_j)`` (a loop mirror or coated facet per waveguide, ``R = R^T``), returns
through the same waveguides and leaves by the input ports (separated from the input by
a circulator per port; the model counts an ideal one). By Lorentz reciprocity the
return trip is ``A^T``, so::

    M = A^T R A = M^T      (with any coupler, phase and loss errors: they are in A)

and the forward-only error pass ``M e`` *is* ``M^T e``. Every physical shifter is crossed
twice (traversals l and 2L+1-l of the unrolled 2L-layer network), so its gradient is
the sum over both: ``dL/dphi_l = -2 Im sum_b (u_l eps_l + u_l' eps_l')``. Taps stack the two
traversals along the batch axis, ``fields`` (L, 2B, N): rows 0..B-1 the outbound trip,
B..2B-1 the return trip, so :func:`optics.core.ffm.phase_gradient` (a sum over the batch axis)
gives exactly that sum. In-mesh taps are directional couplers to on-chip coherent
receivers; a directional tap tells the two directions of travel apart. A mesh followed
by a second, mirror-image mesh would not do: its fabrication errors differ, so it is not
``A^T``.

**Expressivity cost.** A universal A reaches all of U(N) (N^2 real parameters); ``M`` is a
complex-symmetric unitary, which has N(N+1)/2 (every such M is ``U^T U`` for some unitary
U, by Takagi's factorisation, so the double pass reaches them all). Reading C output
modes, the C x C block of M must be symmetric too. ``tests/test_mzi.py`` checks the rank
of the Jacobian (N^2 against N(N+1)/2); docs/mzi.md gives measured task accuracies.

**Hidden errors** (``MeshErrors``, level-1 values, all scaled by ``level``): coupler angle
``pi/4 + 0.05 rad`` rms (splitting 50 +/- 5 %; splitter-angle errors of this size are the
standard model in Hamerly et al., Phys. Rev. Applied 18, 024019, 2022 and Nat. Commun.
13, 6831, 2022; published error studies use 0.02-0.11), a static phase on every
waveguide segment and on the mirror of 0.1 rad rms (what is left after a per-MZI
calibration; our assumption, not a cited figure), thermal crosstalk 2 % of each
neighbouring shifter's phase in the same layer (heaters in silicon without trenches:
several % between neighbours, Milanizadeh et al., J. Lightwave Technol. 37, 1325, 2019),
and 0.1 +/- 0.02 dB loss per waveguide segment per layer (a few tenths of a dB per MZI,
Bogaerts et al., Nature 586, 207, 2020). Heaters only add phase, so the driver writes
``commanded mod 2 pi`` and crosstalk sees that value. Photodetection reuses
:mod:`optics.core.measurement` (shot and read noise, ADC, residual reference phase; keyed by
chip seed, round, pass, sample and tap); one sample's in-mesh taps are read as one
(K, N) frame and its detected output modes as a (1, N) frame.
"""

from __future__ import annotations

import math

import numpy as np

from optics.core.backend import Backend, get_backend
from optics.core.camera import Camera
from optics.core.detectors import Detectors
from optics.core.measurement import MeasurementSpec, PassKey, Tap, measure_field_
from optics.core.taps import Taps
from optics.core.validate import check_finite, check_nonnegative
from optics.mesh.layout import (
    ARRANGEMENTS,
    MeshErrors,
    MeshHidden,
    MeshLayout,
    check_int,
    check_modes,
    draw_mesh_errors,
)

TWO_PI = 2.0 * math.pi


def mode_detectors(n_modes: int, modes, backend: Backend) -> Detectors:
    """Class c read as the intensity of output mode ``modes[c]``: masks (N, C), plane (N,)."""
    masks = np.zeros((n_modes, len(modes)))
    masks[list(modes), np.arange(len(modes))] = 1.0
    return Detectors(
        n_modes, 1, [(0, int(m)) for m in modes], backend.asarray(masks, backend.real_dtype), plane=(n_modes,)
    )


def default_detector_modes(n_modes: int, n_classes: int) -> tuple[int, ...]:
    """``n_classes`` output modes spread evenly over the N modes."""
    return tuple(int(m) for m in np.round(np.linspace(0, n_modes - 1, n_classes)))


class _MeshBase:
    """Programming, the unrolled arrangement and its passes; subclasses give the errors."""

    def __init__(
        self,
        n_modes: int,
        n_classes: int,
        arrangement: str,
        backend: Backend | None,
        detector_modes,
        hidden: MeshHidden,
    ):
        self.layout = MeshLayout(check_modes(n_modes))
        n = self.layout.n_modes
        if arrangement not in ARRANGEMENTS:
            raise ValueError(f"arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
        n_classes = check_int("n_classes", n_classes, 1, n)
        modes = default_detector_modes(n, n_classes) if detector_modes is None else tuple(detector_modes)
        if (
            len(modes) != n_classes
            or len(set(modes)) != len(modes)
            or not all(isinstance(m, (int, np.integer)) and 0 <= m < n for m in modes)
        ):
            raise ValueError(f"detector_modes must be {n_classes} distinct integer modes in 0..{n - 1}, got {modes}")
        self.n_modes, self.n_classes, self.arrangement = n, n_classes, arrangement
        self.backend = backend or get_backend()
        self.detectors = mode_detectors(n, modes, self.backend)
        self.detector_modes = modes
        self.amplitudes = None
        self.shifter_mask = self.layout.shifter_mask()
        self._hidden = hidden
        self._build_operators(hidden)
        self.program(np.zeros((self.layout.n_layers, n)))

    def _build_operators(self, h: MeshHidden) -> None:
        be, cdt = self.backend, self.backend.complex_dtype
        props = self.layout.propagations(h.kappas)
        self._single = props
        if self.arrangement == "double":
            mirror = np.diag(np.exp(1j * h.mirror_phases))
            ops = props[:-1] + [props[-1].T @ mirror @ props[-1]] + [p.T for p in props[-2::-1]]
        else:
            ops = props
        self._ops_f = [be.asarray(q.T, cdt) for q in ops]  # right-multiply rows: a @ Q^T = (Q a^T)^T
        self._ops_t = [be.asarray(q, cdt) for q in ops]  # transpose pass: a @ Q = (Q^T a^T)^T
        self._mask = be.asarray(self.shifter_mask, be.real_dtype)
        self._loss = be.asarray(h.loss, be.real_dtype)
        self._xtalk = be.asarray(h.crosstalk * self.layout.neighbours(), be.real_dtype)

    # -- programming -------------------------------------------------------------------
    def program(self, phases, amplitudes=None) -> None:
        """Write commanded phases (L, N) radians; entries outside ``shifter_mask`` are ignored.
        A mesh has phase shifters only: ``amplitudes`` must be None (the OpticalChip signature)."""
        if amplitudes is not None:
            raise ValueError("amplitudes: an MZI mesh has no amplitude modulators; set trainer.train_amplitude=false")
        shape = (self.layout.n_layers, self.n_modes)
        arr = self.backend.asarray(phases, dtype=self.backend.xp.float64)
        if tuple(arr.shape) != shape:
            raise ValueError(f"phases has shape {tuple(arr.shape)}, expected (n_layers, n_modes) = {shape}")
        check_finite("phases", arr)
        xp = self.backend.xp
        realised = self.realised_phases(arr)
        t = self._loss * xp.exp(1j * realised).astype(self.backend.complex_dtype, copy=False)
        self.transmissions = t  # (L, N), one trip
        self._unrolled = xp.concatenate([t, t[::-1]]) if self.arrangement == "double" else t

    def realised_phases(self, commanded):
        """Phase each waveguide segment applies: shifters (mod 2 pi, plus crosstalk) + static offsets."""
        xp = self.backend.xp
        w = xp.mod(commanded, TWO_PI) * self._mask
        if self._hidden.crosstalk > 0:
            w = w + xp.einsum("lij,lj->li", self._xtalk, w)
        return w + self.backend.asarray(self._hidden.phase_offsets)

    # -- passes (noise-free) -----------------------------------------------------------
    def _checked(self, name: str, x):
        x = self.backend.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_modes:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected (batch, n_modes={self.n_modes})")
        check_finite(name, x)
        return x.astype(self.backend.complex_dtype)

    def _forward(self, x):
        """Arriving fields at each traversal (K, B, N) and the output (B, N) of the unrolled chain."""
        xp, t = self.backend.xp, self._unrolled
        arrive = xp.empty((t.shape[0],) + tuple(x.shape), dtype=self.backend.complex_dtype)
        a = x @ self._ops_f[0]
        for k in range(t.shape[0]):
            arrive[k] = a
            a = (a * t[k]) @ self._ops_f[k + 1]
        return arrive, a

    def _transpose(self, e):
        """Reverse-mode errors ``eps_k`` (K, B, N) arriving at each traversal, and ``M^T e`` (B, N)."""
        xp, t = self.backend.xp, self._unrolled
        n_trav = t.shape[0]
        eps = xp.empty((n_trav,) + tuple(e.shape), dtype=self.backend.complex_dtype)
        eps[n_trav - 1] = e @ self._ops_t[n_trav]
        for k in range(n_trav - 1, 0, -1):
            eps[k - 1] = (eps[k] * t[k]) @ self._ops_t[k]
        return eps, (eps[0] * t[0]) @ self._ops_t[0]

    def _fold(self, per_traversal):
        """(K, B, N) -> (L, fB, N): double pass stacks traversals l and K-1-l along the batch axis."""
        if self.arrangement == "single":
            return per_traversal
        n_layers = self.layout.n_layers
        return self.backend.xp.concatenate([per_traversal[:n_layers], per_traversal[::-1][:n_layers]], axis=1)

    def true_data_pass(self, inputs) -> Taps:
        """Noise-free data pass: taps ``u`` (L, fB, N), output ``y`` (B, N), ``|y|^2`` (B, N)."""
        arrive, y = self._forward(self._checked("inputs", inputs))
        return Taps(self._fold(arrive * self._unrolled[:, None, :]), y, (y * y.conj()).real)

    def true_error_pass(self, error, to_input: bool = False) -> Taps:
        """Exact reverse-mode pass (the transpose of this chip's actual optics), noise-free."""
        eps, at_input = self._transpose(self._checked("error", error))
        return Taps(self._fold(eps), at_input if to_input else None)

    def transfer_matrix(self) -> np.ndarray:
        """The arrangement's (N, N) matrix (``M = A^T R A`` or ``A``), NumPy complex."""
        _, y = self._forward(self.backend.xp.eye(self.n_modes, dtype=self.backend.complex_dtype))
        return self.backend.to_numpy(y).T

    def mesh_matrix(self) -> np.ndarray:
        """The single trip ``A`` (N, N), whatever the arrangement, NumPy complex."""
        a, t = self._single[0].copy(), self.backend.to_numpy(self.transmissions)
        for layer in range(self.layout.n_layers):
            a = self._single[layer + 1] @ (t[layer][:, None] * a)
        return a

    def _describe(self) -> dict:
        return {
            "n_modes": self.n_modes,
            "n_classes": self.n_classes,
            "arrangement": self.arrangement,
            "n_layers": self.layout.n_layers,
            "n_shifters": int(self.shifter_mask.sum()),
            "detector_modes": list(self.detector_modes),
            "symmetric": self.arrangement == "double",
            "backend": self.backend.name,
            "dtype": np.dtype(self.backend.complex_dtype).name,
        }


class MeshTwin(_MeshBase):
    """The ideal mesh the experimenter believes in: 50:50 couplers, no offsets, loss or noise.

    Its ``error_pass`` is the exact transpose (in-silico backprop), as for the diffractive twin.
    """

    def __init__(
        self,
        n_modes: int,
        n_classes: int,
        arrangement: str = "double",
        backend: Backend | None = None,
        detector_modes=None,
    ):
        layout = MeshLayout(check_modes(n_modes))
        ideal = MeshHidden(
            layout.ideal_kappas(),
            np.zeros((layout.n_layers, layout.n_modes)),
            np.zeros(layout.n_modes),
            np.ones((layout.n_layers, layout.n_modes)),
            0.0,
        )
        super().__init__(n_modes, n_classes, arrangement, backend, detector_modes, ideal)

    def data_pass(self, inputs, key: PassKey | None = None) -> Taps:
        return self.true_data_pass(inputs)

    def error_pass(self, error, key: PassKey | None = None, to_input: bool = False) -> Taps:
        return self.true_error_pass(error, to_input)

    def infer(self, inputs, key: PassKey | None = None):
        _, y = self._forward(self._checked("inputs", inputs))
        return (y * y.conj()).real

    def describe(self) -> dict:
        return {"kind": "mesh_twin", **self._describe()}


class SimulatedMesh(_MeshBase):
    """A "physical" mesh: hidden errors drawn from ``seed`` and noisy coherent receivers.

    ``errors`` defaults to ``MeshErrors(level=level)``; ``measurement`` to
    ``MeasurementSpec(level=errors.level)``. The error pass is forward-only: the error is
    injected at the input ports and crosses the same arrangement as the data.
    """

    def __init__(
        self,
        n_modes: int,
        n_classes: int,
        level: float = 1.0,
        seed: int = 0,
        arrangement: str = "double",
        errors: MeshErrors | None = None,
        measurement: MeasurementSpec | None = None,
        backend: Backend | None = None,
        detector_modes=None,
    ):
        self.errors = errors or MeshErrors(level=check_nonnegative("level", level))
        self.measurement = measurement or MeasurementSpec(level=self.errors.level)
        self.seed = int(seed)
        hidden = draw_mesh_errors(self.errors, MeshLayout(check_modes(n_modes)), self.seed)
        super().__init__(n_modes, n_classes, arrangement, backend, detector_modes, hidden)

    @property
    def camera(self) -> Camera:
        """This mesh's coherent receivers: its measurement spec, keyed by its seed."""
        return Camera(self.measurement, self.seed, self.backend)

    @staticmethod
    def _measure_(fields, spec: MeasurementSpec, key: PassKey, tap: int, backend, scale=None, rotation=None) -> None:
        """Holographic measurement of (K, B, N) or (B, N) fields in place.

        One sample's taps are read as one frame (K, N): one keyed noise stream per
        (pass, sample, ``tap``) and one ADC range over the frame's peak.
        """
        b, n = fields.shape[-2], fields.shape[-1]
        frame = backend.xp.ascontiguousarray(fields.reshape((-1, b, n)).transpose(1, 0, 2))
        measure_field_(frame, spec, key, tap, backend, scale, rotation)
        fields[...] = frame.transpose(1, 0, 2).reshape(fields.shape)

    def data_pass(self, inputs, key: PassKey) -> Taps:
        """Measured taps ``u`` at every traversal (L, fB, N), output field and intensity (B, N)."""
        arrive, y = self._forward(self._checked("inputs", inputs))
        u = arrive * self._unrolled[:, None, :]
        intensity = (y * y.conj()).real[:, None, :]  # one (1, N) frame per sample
        measured = [(u, 0), (y, Tap.MESH_OUTPUT)]  # all in-mesh taps as one frame: layer tap 0
        intensity = self.camera.data_pass_taps(key, measured, intensity, self._measure_)[:, 0, :]
        return Taps(self._fold(u), y, intensity)

    def error_pass(self, error, key: PassKey, to_input: bool = False) -> Taps:
        """Forward-only: ``e`` enters the input ports and crosses the arrangement like the data.

        Double pass: the error at traversal k is the field arriving at traversal K-1-k,
        which equals the exact transpose pass. Single pass: the field arriving at the
        same shifter, which does not (the negative control). ``to_input``: the output ``M e``.
        """
        e = self._checked("error", error)
        arrive, out = self._forward(e)
        eps = arrive[::-1].copy() if self.arrangement == "double" else arrive
        measured = [(eps, 0)] + ([(out, Tap.MESH_ERROR_OUTPUT)] if to_input else [])
        self.camera.error_pass_taps(key, e, measured, self._measure_)
        return Taps(self._fold(eps), out if to_input else None)

    def infer(self, inputs, key: PassKey):
        _, y = self._forward(self._checked("inputs", inputs))
        return self.camera.detected(key, (y * y.conj()).real[:, None, :])[:, 0, :]

    def reveal(self) -> MeshHidden:
        """The hidden errors, for analysis after training (never for training)."""
        return self._hidden

    def describe(self) -> dict:
        return {"kind": "simulated_mesh", "seed": self.seed, "level": self.errors.level, **self._describe()}
