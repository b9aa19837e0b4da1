"""Focusing light through a scattering medium, in a symmetric arrangement for FFM.

Set-up (SI units; fields are (B, n, n) complex arrays on plane A, pixel pitch ``dx`` metres;
illumination of unit total power, so ``|y|^2`` is a fraction of the input photons)::

    laser -> SLM (S x S segments, phase phi) ==relay==> plane A -- objective (NA) -- medium -- mirror
                                                           |  beam splitter
                                                         camera (images plane A, holographic)

Operators (``docs/design.md`` section 1 notation)::

    u = a * U exp(i phi)          U: each SLM segment onto b = n / S pixels per side; a = 1/n
    K = F^-1 circ(|f| <= NA / lambda) F          objective pupil; even in f, so K = K^T
    G = D_m P D_{m-1} ... P D_1                  m phase screens D_k = diag(exp(i s_k)), hops P = P^T
    R = -P(2 d)                                  plane mirror d behind the last screen (unfolded)
    reflection   (default):  y = M u,  M = K G^T R G K
    transmission (control):  y = M u,  M = K P(d) G K     (camera images the plane d behind the exit)

**Why reflection.** One pass ``G`` through a multi-screen medium is reciprocal but not
symmetric: ``G^T = D_1 P ... P D_m`` meets the screens in the reverse order, so
``G^T != G`` unless the screen order is a palindrome. The light that comes back from the
mirror crosses the medium along ``G^T`` (Lorentz reciprocity), hence ``M^T = K^T G^T R^T G
K^T = M``: the double pass is symmetric for *any* medium. FFM needs exactly this: the
error pass ``eps = M^T e`` is then ``M e``, i.e. the error field ``e = (dL/dI) conj(y)``
is sent into plane A and travels forward through the same objective, medium and mirror;
the camera measures ``eps`` where it measured ``y``. In transmission the forward-only
error pass gives ``M e != M^T e`` and the gradient is wrong (the negative control).

With the loss on a few target pixels, ``e`` is a phase-conjugated point source at each
target, so the error pass is the physical "guide star" of wavefront shaping. Gradient
with respect to segment ``j`` (radians^-1; :func:`optics.scattering.focus.focus_gradient`)::

    dL/dphi_j = -2 Im( sum_{p in segment j} u_p eps_p )

**Periodic cell.** Hops, mirror and pupil act on the n x n cell with periodic boundaries
(FFT size n, no zero padding), the supercell of multislice scattering models: light
leaving one side re-enters the other instead of escaping, so every SLM segment reaches
every target with the same mean weight and the transmission-matrix row is i.i.d.
(with zero padding the far segments barely reach a target: measured ensemble optimum
83 instead of 201 for 256 segments). The defaults scatter strongly (4 screens of 3 rad
rms, 1 px correlation, 250 um apart): speckle contrast ~1 and the ensemble optimum of
phase conjugation ``(sum_j |T_kj|)^2 / sum_j |T_kj|^2`` is 198-203 against the
theoretical ``pi/4 (N - 1) + 1 = 201`` (N = 256, seeds 1 and 2).

The medium's screens are hidden (drawn from ``seed``); cameras follow
:mod:`optics.core.measurement` (shot and read noise, ADC, residual reference phase) with noise
keyed by (seed, round, pass, sample, tap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optics.core.backend import Backend, get_backend
from optics.core.camera import Camera
from optics.core.measurement import MeasurementSpec, PassKey, Tap
from optics.core.propagation import Propagator, make_propagator, propagate, propagate_transpose, reflect_frequencies
from optics.core.screens import correlated_screen
from optics.core.taps import Taps
from optics.core.validate import check_choice, check_finite, check_positive

GEOMETRIES = ("reflection", "transmission")
AIRY_FWHM = 0.5145  # intensity FWHM of an Airy spot in units of lambda / NA


@dataclass(frozen=True)
class MediumSpec:
    """Geometry of the SLM, objective and medium (lengths in metres, angles as NA).

    ``n`` camera / plane-A pixels per side (pitch ``pitch``); ``segments`` SLM macro-pixels
    per side (must divide ``n``); ``na`` objective numerical aperture; ``n_screens`` phase
    screens of ``screen_rms_rad`` rms and ``screen_corr_px`` Gaussian correlation,
    ``screen_spacing`` apart; ``back_distance`` from the last screen to the mirror
    (reflection) or to the imaged exit plane (transmission).
    """

    n: int = 64
    segments: int = 16
    pitch: float = 2e-6
    wavelength: float = 532e-9
    na: float = 0.05
    n_screens: int = 4
    screen_spacing: float = 250e-6
    screen_rms_rad: float = 3.0
    screen_corr_px: float = 1.0
    back_distance: float = 100e-6
    geometry: str = "reflection"

    def __post_init__(self) -> None:
        for name in ("pitch", "wavelength", "na", "screen_spacing", "back_distance", "screen_rms_rad"):
            check_positive(name, getattr(self, name))
        check_choice("geometry", self.geometry, GEOMETRIES)
        if int(self.n) != self.n or self.n < 8:
            raise ValueError(f"n must be an integer >= 8 pixels, got {self.n}")
        if int(self.segments) != self.segments or self.segments < 1 or self.n % self.segments:
            raise ValueError(f"segments must be a positive integer dividing n={self.n}, got {self.segments}")
        if int(self.n_screens) != self.n_screens or self.n_screens < 1:
            raise ValueError(f"n_screens must be an integer >= 1, got {self.n_screens}")
        if self.na > self.wavelength / (2 * self.pitch):
            raise ValueError(
                f"na={self.na} exceeds the grid's limit lambda/(2 pitch)="
                f"{self.wavelength / (2 * self.pitch):.3g}; lower na or the pitch"
            )

    @property
    def segment_px(self) -> int:
        return self.n // self.segments

    @property
    def n_modes(self) -> int:
        """Independently controlled SLM segments ``N``."""
        return self.segments**2

    @property
    def grain(self) -> float:
        """Speckle grain / diffraction limit ``lambda / (2 NA)`` in metres."""
        return self.wavelength / (2 * self.na)

    @property
    def airy_fwhm(self) -> float:
        """Intensity FWHM of a diffraction-limited focus, ``0.5145 lambda / NA`` (metres)."""
        return AIRY_FWHM * self.wavelength / self.na


def theoretical_enhancement(n_modes: int) -> float:
    """Vellekoop-Mosk enhancement for phase-only control of N independent modes, ``pi/4 (N-1) + 1``."""
    return math.pi / 4 * (n_modes - 1) + 1


def upsample(x, b: int):
    """Segments (..., S, S) -> pixels (..., S b, S b), each value on a b x b block (``U``)."""
    return x.repeat(b, axis=-2).repeat(b, axis=-1)


def segment_sum(x, b: int):
    """Pixels (..., n, n) -> segments (..., n/b, n/b), sum over each b x b block (``U^T``)."""
    s = x.shape[-1] // b
    return x.reshape(x.shape[:-2] + (s, b, s, b)).sum(axis=(-3, -1))


def pupil_propagator(backend: Backend, spec: MediumSpec) -> Propagator:
    """Objective pupil ``K`` as a :class:`Propagator`: ``circ(|f| <= NA/lambda)`` on the periodic cell."""
    n_pad = spec.n
    f = np.fft.fftfreq(n_pad, d=spec.pitch)
    keep = (f[:, None] ** 2 + f[None, :] ** 2) <= (spec.na / spec.wavelength) ** 2
    h = keep / float(n_pad * n_pad)
    h_t = reflect_frequencies(h)
    cdt = backend.complex_dtype
    return Propagator(
        backend, spec.n, n_pad, backend.asarray(h, cdt), backend.asarray(h_t, cdt), bool(np.array_equal(h, h_t))
    )


class ScatteringMedium:
    """A hidden scattering medium behind a phase SLM, with holographic cameras (see module doc)."""

    def __init__(
        self,
        spec: MediumSpec | None = None,
        seed: int = 0,
        measurement: MeasurementSpec | None = None,
        backend: Backend | None = None,
    ):
        self.spec = s = spec or MediumSpec()
        self.seed = int(seed)
        self.backend = be = backend or get_backend(fft_threads=1)
        self.measurement = measurement or MeasurementSpec()
        rng = np.random.default_rng([self.seed, 0x5CA7])
        screens = np.stack(
            [correlated_screen(rng, (s.n, s.n), s.screen_rms_rad, s.screen_corr_px) for _ in range(s.n_screens)]
        )
        self._screens = be.asarray(np.exp(1j * screens), be.complex_dtype)
        self._hop = make_propagator(be, s.n, s.pitch, s.wavelength, s.screen_spacing, n_pad=s.n)
        back = 2 * s.back_distance if s.geometry == "reflection" else s.back_distance
        self._back = make_propagator(be, s.n, s.pitch, s.wavelength, back, n_pad=s.n)
        self._pupil = pupil_propagator(be, s)
        self.illumination = be.asarray(np.full((s.n, s.n), 1.0 / s.n), be.real_dtype)

    # -- exact linear optics ---------------------------------------------------------------
    def medium(self, field, transpose: bool = False):
        """``G u`` (entrance face to last screen) or ``G^T u`` (last screen back to the entrance)."""
        order = range(self.spec.n_screens)
        out = field
        for i, k in enumerate(reversed(order) if transpose else order):
            if i:
                out = (propagate_transpose if transpose else propagate)(out, self._hop)
            out = out * self._screens[k]
        return out

    def single_pass(self, field, transpose: bool = False):
        """``G K u`` (into the medium through the objective) or its transpose ``K^T G^T u``."""
        if transpose:
            return propagate_transpose(self.medium(field, transpose=True), self._pupil)
        return self.medium(propagate(field, self._pupil))

    def apply(self, field, transpose: bool = False):
        """``M u`` or ``M^T u`` for fields (..., n, n) (see module doc for ``M``).

        The transpose is built operator by operator (``K^T``, ``R^T``, ``G^T`` with ``P^T``
        hops), so ``apply(., True) == apply(.)`` in reflection is a check, not an assumption.
        """
        hop = propagate_transpose if transpose else propagate
        pupil, back = self._pupil, self._back
        if self.spec.geometry == "reflection":  # M = K G^T R G K,  M^T = K^T G^T R^T G K^T
            inner = self.medium(hop(field, pupil))
            return hop(self.medium(-hop(inner, back), transpose=True), pupil)
        if transpose:  # M^T = K^T G^T P^T K^T
            return hop(self.medium(hop(hop(field, pupil), back), transpose=True), pupil)
        return hop(hop(self.medium(hop(field, pupil)), back), pupil)  # M = K P G K

    def slm_field(self, phases):
        """``u = a * U exp(i phi)`` (B, n, n) from segment phases (B, S, S) or (S, S), radians."""
        be, s = self.backend, self.spec
        phi = be.asarray(phases, dtype=be.xp.float64)
        if phi.shape[-2:] != (s.segments, s.segments) or phi.ndim not in (2, 3):
            raise ValueError(
                f"phases has shape {tuple(phi.shape)}, expected (batch, {s.segments}, "
                f"{s.segments}) or ({s.segments}, {s.segments}) radians"
            )
        check_finite("phases", phi)
        t = be.xp.exp(1j * phi.reshape((-1, s.segments, s.segments))).astype(be.complex_dtype)
        return upsample(t, s.segment_px) * self.illumination

    # -- passes as the hardware runs them ------------------------------------------------
    def true_data_pass(self, phases) -> Taps:
        """Noise-free data pass: taps ``u`` (1, B, n, n), camera field ``y`` and ``|y|^2`` (oracle)."""
        u = self.slm_field(phases)
        y = self.apply(u)
        return Taps(u[None], y, (y * y.conj()).real)

    @property
    def camera(self) -> Camera:
        """This set-up's holographic camera: its measurement spec, keyed by the medium's seed."""
        return Camera(self.measurement, self.seed, self.backend)

    def data_pass(self, phases, key: PassKey) -> Taps:
        """Measured data pass: ``u`` and ``y`` holographically, ``|y|^2`` on the camera."""
        taps = self.true_data_pass(phases)
        measured = [(taps.fields[0], 0), (taps.output, Tap.DETECTOR)]  # the SLM plane is layer tap 0
        return Taps(taps.fields, taps.output, self.camera.data_pass_taps(key, measured, taps.intensity))

    def error_pass(self, error, key: PassKey) -> Taps:
        """Forward-only error pass: ``e`` sent into plane A through the same optics, ``eps = M e`` measured."""
        e = self._checked_error(error)
        eps = self.apply(e)[None]
        self.camera.error_pass_taps(key, e, [(eps[0], 0)])  # unit power sent; noise scales with ||e||
        return Taps(eps)

    def true_error_pass(self, error) -> Taps:
        """Exact reverse-mode pass ``M^T e`` (oracle; equals the forward-only pass in reflection)."""
        return Taps(self.apply(self._checked_error(error), transpose=True)[None])

    def frames(self, phases, key: PassKey):
        """Camera intensity frames (B, n, n) for intensity-only (model-free) optimisers; one pass each."""
        return self.camera.detected(key, self.true_data_pass(phases).intensity)

    def _checked_error(self, error):
        n = self.spec.n
        e = self.backend.asarray(error)
        if e.ndim != 3 or e.shape[-2:] != (n, n):
            raise ValueError(f"error has shape {tuple(e.shape)}, expected (batch, {n}, {n})")
        return e.astype(self.backend.complex_dtype, copy=False)

    def reveal(self) -> dict[str, np.ndarray]:
        """The hidden screens' transmissions (for analysis only, never for training)."""
        return {"screens": self.backend.to_numpy(self._screens)}

    def describe(self) -> dict:
        return {
            "kind": "scattering",
            "seed": self.seed,
            "backend": self.backend.name,
            "dtype": np.dtype(self.backend.complex_dtype).name,
            **self.spec.__dict__,
        }


def check_targets(targets, n: int) -> np.ndarray:
    """Target pixels as an int array (K, 2) of (row, col), or a one-line ``ValueError``."""
    t = np.asarray(targets)
    if t.ndim == 1 and t.size == 2:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] == 0 or not np.all(np.mod(t, 1) == 0):
        raise ValueError(f"targets must be integer (row, col) pixel pairs, shape (K, 2), got {t.tolist()}")
    t = t.astype(np.int64)
    if t.min() < 0 or t.max() >= n:
        raise ValueError(f"targets must lie on the {n} x {n} camera (0..{n - 1}), got {t.tolist()}")
    if len({tuple(x) for x in t}) != len(t):
        raise ValueError(f"targets must be distinct pixels, got {t.tolist()}")
    return t
