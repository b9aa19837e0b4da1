"""Exceptional points of coupled resonators, reached with forward-only (FFM) gradients.

Units: frequencies and rates are in units of a reference linewidth ``gamma0`` (an
amplitude decay rate; time in ``1/gamma0``); frequencies are detunings from a reference
optical frequency (rotating frame). Fields are normalised so that unit input amplitude
carries unit power; time dependence ``exp(-i w t)``.

**System** (temporal coupled-mode theory). ``N`` resonators in a chain, commanded knobs
``p = (w_1..w_N, k_1..k_{N-1})`` (heater detunings, tunable couplers)::

    H = diag(w_j + dw_j + i (g_j + dg_j)) + offdiag(k_l + dk_l)

``g_j`` is the net amplitude gain (> 0) or loss (< 0) of resonator ``j``, port loading
included; ``dw, dk, dg`` are hidden fabrication offsets drawn from the seed, which the
experimenter never reads. Reciprocity makes the coupling symmetric, ``H = H^T``: complex
symmetric, non-Hermitian. ``nonreciprocity`` ``a`` (negative controls only) makes
``H[l, l+1] = (1 + a) k``, ``H[l+1, l] = (1 - a) k``. Light enters resonator 1 (rate
``kappa_in``) and leaves resonator N (``kappa_out``)::

    (w - H) a = i sqrt(kappa_in) b_in s_in,      s_out = sqrt(kappa_out) b_out^T a
    t(w) = i sqrt(kappa_in kappa_out) b_out^T G(w) b_in,    G = (w - H)^{-1}

Calibrated weak taps read every ``a_j``; ``t`` and the taps are measured holographically
with :mod:`optics.core.measurement` (shot and read noise, ADC, residual reference phase per
pass), keyed by (seed, step, pass, probe frequency index).

**FFM gradient.** ``dG/dp = G (dH/dp) G`` and ``G^T = G`` (since ``H = H^T``), so::

    dt/dp = i sqrt(kappa_in kappa_out) (G b_out)^T (dH/dp) (G b_in) = -i v^T (dH/dp) u

with ``u = i sqrt(kappa_in) G b_in`` the tap fields of the data pass (light into the input
port) and ``v = i sqrt(kappa_out) G b_out`` those of the error pass (light into the output
port: forward through the same device). ``dH/dw_j = e_j e_j^T`` and ``dH/dk_l = e_l
e_{l+1}^T + e_{l+1} e_l^T`` are the knobs' local actions; no model of ``H``, no
conjugation. Without ``H = H^T`` the product is not the derivative.

**Objective from spectra (digital).** With ports at the chain ends the numerator of ``t``
is the product of the couplings (frequency independent), so ``t(w) = c / q(w)`` with
``q(w) = det(w - H) = w^N + a_{N-1} w^{N-1} + ... + a_0``. ``q`` and ``c`` are fitted to the
measured ``t_k`` by Levy's linearised least squares weighted by ``|t_k|`` (which undoes its
``|q|`` bias): ``min sum_k |t_k|^2 |t_k q(w_k) - c|^2``. Eigenvalues are the roots of ``q``;
the residual is the discriminant ``D = disc(q) = prod_{i<j} (lambda_i - lambda_j)^2``
(``N = 2``: ``tr^2 - 4 det = (lambda_+ - lambda_-)^2``), zero at an exceptional point. The
chain rule ``dD/dp = (dD/da)(da/dt)(dt/dp)``: the first two are exact derivatives of the
digital fit, the last is optical (``dt/dp`` at every probe frequency from the two passes).
The fit and the discriminant are in :mod:`optics.resonators.spectrum`.

**Update.** Gauss-Newton on the complex residual: the min-norm ``dp`` with
``[Re; Im](D + (dD/dp) dp) = 0``, scaled by ``lr`` and clipped to ``max_step``; or Adam /
SGD (:mod:`optics.core.optim`) on ``L = |D|^2``, ``dL/dp = 2 Re(conj(D) dD/dp)``.
"""

from __future__ import annotations

import math

import numpy as np

from optics.core.backend import get_backend
from optics.core.camera import Camera
from optics.core.measurement import MeasurementSpec, PassKey
from optics.core.optim import OptimizerSpec, init_state
from optics.core.optim import step as optim_step
from optics.core.validate import check_choice, check_nonnegative, check_positive
from optics.resonators.spectrum import brief, check_freqs, discriminant, eigenvalues_from_fit, fit_spectrum, splitting

METHODS = ("gauss_newton", "adam", "sgd")
# Level-1 hidden fabrication scatter, in gamma0 (illustrative for trimmed microrings:
# resonance scatter after thermal trimming, coupler gap error, loss scatter).
DETUNING_RMS, COUPLING_RMS, GAIN_RMS = 0.3, 0.05, 0.05


class ResonatorChain:
    """A simulated chain of coupled resonators with hidden offsets, seen only through passes.

    ``gain`` (N >= 2 floats): designed net amplitude gain rates ``g_j`` (negative: loss).
    ``level`` scales the hidden scatter (``DETUNING_RMS``, ``COUPLING_RMS``, ``GAIN_RMS``).
    ``precision`` 'complex64' (default) or 'complex128' for the optical simulation.
    """

    def __init__(
        self,
        gain=(-0.25, -2.25),
        kappa_in: float = 0.2,
        kappa_out: float = 0.2,
        level: float = 1.0,
        nonreciprocity: float = 0.0,
        seed: int = 0,
        measurement: MeasurementSpec | None = None,
        precision: str = "complex64",
    ):
        g = np.asarray(gain, dtype=np.float64)
        if g.ndim != 1 or g.size < 2 or not np.isfinite(g).all():
            raise ValueError(f"gain must be >= 2 finite rates (one per resonator), got {brief(gain)}")
        self.kappa_in = check_positive("kappa_in", kappa_in)
        self.kappa_out = check_positive("kappa_out", kappa_out)
        self.level = check_nonnegative("level", level)
        self.nonreciprocity = float(nonreciprocity)
        if not -1 < self.nonreciprocity < 1:
            raise ValueError(f"nonreciprocity must be in (-1, 1), got {nonreciprocity!r}")
        self.seed, self.n, self.gain = int(seed), g.size, g
        self.measurement = MeasurementSpec() if measurement is None else measurement
        self.backend = get_backend("numpy", precision)
        rng = np.random.default_rng([self.seed, 0xE9])
        self._dw = rng.normal(0, DETUNING_RMS * self.level, self.n)  # hidden
        self._dk = rng.normal(0, COUPLING_RMS * self.level, self.n - 1)
        self._dg = rng.normal(0, GAIN_RMS * self.level, self.n)

    @property
    def n_params(self) -> int:
        """Knobs: N detunings then N - 1 couplings."""
        return 2 * self.n - 1

    def check_params(self, params) -> np.ndarray:
        p = np.asarray(params, dtype=np.float64)
        if p.shape != (self.n_params,) or not np.isfinite(p).all():
            raise ValueError(
                f"params must be {self.n_params} finite numbers (w_1..w_{self.n}, "
                f"k_1..k_{self.n - 1}), got {brief(params)}"
            )
        return p

    # -- simulator oracle (hidden values; tests and evaluation only) --------------------
    def true_hamiltonian(self, params) -> np.ndarray:
        """The realised ``H`` (N, N) complex128, hidden offsets and nonreciprocity included."""
        p = self.check_params(params)
        n, k = self.n, p[self.n :] + self._dk
        h = np.diag(p[:n] + self._dw + 1j * (self.gain + self._dg))
        idx = np.arange(n - 1)
        h[idx, idx + 1] = (1 + self.nonreciprocity) * k
        h[idx + 1, idx] = (1 - self.nonreciprocity) * k
        return h

    def realised(self, params) -> dict[str, np.ndarray]:
        """Realised detunings, couplings and net gains (float64): the oracle for EP checks."""
        p = self.check_params(params)
        return {"detuning": p[: self.n] + self._dw, "coupling": p[self.n :] + self._dk, "gain": self.gain + self._dg}

    def fields(self, params, freqs, port: str) -> np.ndarray:
        """Noise-free resonator fields (K, N) for unit input at ``port`` ('in' or 'out')."""
        check_choice("port", port, ("in", "out"))
        w = check_freqs(freqs, 1)
        be, h = self.backend, self.true_hamiltonian(params)
        m = be.asarray(w[:, None, None] * np.eye(self.n) - h, be.complex_dtype)
        j, kap = (0, self.kappa_in) if port == "in" else (self.n - 1, self.kappa_out)
        b = be.xp.zeros((w.size, self.n, 1), be.complex_dtype)
        b[:, j, 0] = 1j * math.sqrt(kap)
        return be.xp.linalg.solve(m, b)[..., 0]

    def transmission(self, params, freqs, reverse: bool = False) -> np.ndarray:
        """Noise-free ``t(w)`` (K,): in -> out, or out -> in when ``reverse``."""
        if reverse:
            return math.sqrt(self.kappa_in) * self.fields(params, freqs, "out")[:, 0]
        return math.sqrt(self.kappa_out) * self.fields(params, freqs, "in")[:, -1]

    def true_transmission_gradient(self, params, freqs) -> np.ndarray:
        """Exact ``dt/dp`` (K, P) complex128: ``i sqrt(kin kout) (b_out^T G) (dH/dp) (G b_in)``."""
        w, h = check_freqs(freqs, 1), self.true_hamiltonian(params)
        m = w[:, None, None] * np.eye(self.n) - h
        col = np.linalg.solve(m, np.eye(self.n)[None, :, :1].repeat(w.size, 0))[..., 0]
        row = np.linalg.solve(np.swapaxes(m, 1, 2), np.eye(self.n)[None, :, -1:].repeat(w.size, 0))[..., 0]
        dh = knob_derivatives(self.n, self.nonreciprocity)
        return 1j * math.sqrt(self.kappa_in * self.kappa_out) * np.einsum("kn,pnm,km->kp", row, dh, col)

    # -- measurements ----------------------------------------------------------------------
    def data_pass(self, params, freqs, round_index: int = 0):
        """Light into the input port: measured ``(t (K,), taps u (K, N))``, one frame per probe."""
        f = self._measure(self.fields(params, freqs, "in"), self.kappa_out, -1, round_index, "data")
        return f[:, -1], f[:, :-1]

    def error_pass(self, params, freqs, round_index: int = 0):
        """Light into the output port (forward through the same device): measured taps ``v``."""
        f = self._measure(self.fields(params, freqs, "out"), self.kappa_in, 0, round_index, "error")
        return f[:, :-1]

    def _measure(self, a, kappa, j, round_index, pass_name):
        be = self.backend
        out = math.sqrt(kappa) * a[:, j][:, None]  # the light leaving the other port
        frame = be.xp.concatenate([a, out], axis=1)[:, None, :].copy()
        key = PassKey(int(round_index), pass_name, tuple(range(frame.shape[0])), self.seed)
        Camera(self.measurement, self.seed, be).fields_(key, [(frame, 0)])  # one frame: layer tap 0
        return frame[:, 0, :]

    def describe(self) -> dict:
        """Public facts (no hidden values)."""
        return {
            "n_resonators": self.n,
            "gain": self.gain.tolist(),
            "kappa_in": self.kappa_in,
            "kappa_out": self.kappa_out,
            "level": self.level,
            "seed": self.seed,
            "nonreciprocity": self.nonreciprocity,
            "symmetric": self.nonreciprocity == 0,
            "precision": np.dtype(self.backend.complex_dtype).name,
        }


def knob_derivatives(n: int, nonreciprocity: float = 0.0) -> np.ndarray:
    """``dH/dp`` (2N - 1, N, N): unit diagonal per detuning, the coupler's pair per coupling.

    With ``nonreciprocity = 0`` this is the knobs' known local action that FFM uses."""
    dh = np.zeros((2 * n - 1, n, n))
    for j in range(n):
        dh[j, j, j] = 1.0
    for j in range(n - 1):
        dh[n + j, j, j + 1], dh[n + j, j + 1, j] = 1 + nonreciprocity, 1 - nonreciprocity
    return dh


def ffm_transmission_gradient(u, v) -> np.ndarray:
    """FFM ``dt/dp = -i v^T (dH/dp) u`` (K, 2N - 1) complex128 from measured taps (K, N).

    Detuning ``j``: ``-i u_j v_j``; coupling ``l``: ``-i (u_l v_{l+1} + u_{l+1} v_l)``."""
    u, v = np.asarray(u, np.complex128), np.asarray(v, np.complex128)
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"taps u and v must both be (K, N), got {u.shape} and {v.shape}")
    return -1j * np.einsum("kn,pnm,km->kp", v, knob_derivatives(u.shape[1]), u)


def knob_names(n: int) -> tuple[str, ...]:
    """``('w1', .., 'wN', 'k1', .., 'k{N-1}')``: detuning then coupling knobs."""
    return tuple(f"w{j + 1}" for j in range(n)) + tuple(f"k{j + 1}" for j in range(n - 1))


def default_probes() -> np.ndarray:
    """41 probe frequencies over [-6, 6] gamma0 (the resonances stay well inside)."""
    return np.linspace(-6.0, 6.0, 41)


def ep_residual(freqs, t, u, v, order: int):
    """``(a, D, dD/dp)`` from one data pass ``(t, u)`` and one error pass ``v``, all measured."""
    a, _, da = fit_spectrum(freqs, t, order, ffm_transmission_gradient(u, v))
    d, dd = discriminant(a, da)
    return a, d, dd


def drive_to_exceptional_point(
    system: ResonatorChain,
    start,
    steps: int = 20,
    lr: float = 0.5,
    method: str = "gauss_newton",
    probe_frequencies=None,
    tunable=None,
    max_step: float = 0.5,
) -> dict:
    """Drive ``system`` towards ``D = 0`` with FFM gradients; returns the history (NumPy).

    Each step: a data pass and an error pass at every probe frequency (2 K frames), the fit,
    ``D`` and ``dD/dp``, one update of the ``tunable`` knobs (names from :func:`knob_names`,
    default all). A final data pass measures where it ended. ``true_*`` entries are the
    simulator's oracle (hidden ``H``), for evaluation only; the optimiser never reads them.
    """
    p = system.check_params(start)
    freqs = default_probes() if probe_frequencies is None else check_freqs(probe_frequencies, 2 * system.n + 1)
    _check_drive(steps, lr, max_step, method)
    mask = _tunable_mask(system.n, tunable)
    opt = None if method == "gauss_newton" else OptimizerSpec(kind=method, lr=lr)
    state = None if opt is None else init_state(opt, {"p": p})
    rec, count, first = {k: [] for k in _RECORDS}, 0, None
    for s in range(int(steps) + 1):
        t, u = system.data_pass(p, freqs, s)
        count += freqs.size
        first = t if first is None else first
        if s == steps:
            a = fit_spectrum(freqs, t, system.n)[0]
            d = discriminant(a)[0]
        else:
            a, d, dd = ep_residual(freqs, t, u, system.error_pass(p, freqs, s), system.n)
            count += freqs.size
        _record(rec, system, p, a, d, count)
        if s < steps:
            p, state = _update(p, d, dd * mask, method, lr, max_step, opt, state)
    out = {k: np.asarray(v) for k, v in rec.items()}
    out.update(
        probe_frequencies=freqs,
        spectrum_start=np.asarray(first),
        spectrum_end=np.asarray(t),
        knob_names=list(knob_names(system.n)),
        method=method,
    )
    return out


_RECORDS = (
    "params",
    "eigenvalues",
    "splitting",
    "discriminant",
    "loss",
    "n_measurements",
    "true_eigenvalues",
    "true_splitting",
)


def _record(rec, system, p, a, d, count) -> None:
    eigs, true = eigenvalues_from_fit(a), np.linalg.eigvals(system.true_hamiltonian(p))
    for k, v in zip(
        _RECORDS, (p.copy(), eigs, splitting(eigs), d, abs(d) ** 2, count, true[np.argsort(true.real)], splitting(true))
    ):
        rec[k].append(v)


def _update(p, d, dd, method, lr, max_step, opt, state):
    """One step on the knobs: Gauss-Newton on ``D`` or Adam / SGD on ``|D|^2``."""
    if method == "gauss_newton":
        jac, r = np.stack([dd.real, dd.imag]), np.array([d.real, d.imag])
        dp = -lr * np.linalg.lstsq(jac, r, rcond=None)[0]
        norm = np.linalg.norm(dp)
        return p + dp * min(1.0, max_step / norm) if norm > 0 else p, state
    new, state = optim_step(opt, {"p": p}, {"p": 2.0 * (np.conj(d) * dd).real}, state)
    return new["p"], state


def _check_drive(steps, lr: float, max_step: float, method: str) -> None:
    """One-line ``ValueError`` for a bad loop argument of :func:`drive_to_exceptional_point`."""
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    check_positive("lr", lr)
    check_positive("max_step", max_step)
    check_choice("method", method, METHODS)


def _tunable_mask(n: int, tunable) -> np.ndarray:
    names = knob_names(n)
    if tunable is None:
        return np.ones(len(names))
    unknown = sorted(set(tunable) - set(names))
    if unknown or not tunable:
        raise ValueError(f"tunable must be a non-empty subset of {names}, got {tunable!r}")
    return np.array([float(k in tunable) for k in names])
