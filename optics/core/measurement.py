"""Measurement model: cameras for intensity and (holographically) complex fields.

Fields are in normalised units: each input sample carries unit power, so ``|u|^2`` at
a pixel is the fraction of the sample's photons that land there. With a photon budget
``N`` per sample and quantum efficiency ``QE``:

- **intensity** (the detector plane): ``e ~ Poisson(QE N I) + Normal(0, read^2)``, then an
  ADC with ``adc_bits`` over the frame's own peak (auto-exposure), ``I_meas = e / (QE N)``.
- **complex field** (every tap, both passes; holography with a strong reference of ``R``
  electrons per pixel, scheme ``holography``): each quadrature gets Gaussian noise of std
  ``k_scheme sqrt(1 + read^2 / R) / sqrt(QE N)``, ``k`` = 1/2 (``homodyne``, the ideal
  bound), 1/sqrt(2) (``4-step``, the default), sqrt(3/8) and sqrt(9/8) for Re and Im
  (``3-step``), sqrt(pi) / 2 (``off-axis``); equations in
  :mod:`optics.core.holographic_noise`. The field is quantised over the frame's peak, and
  the whole frame carries ``exp(i theta)``, the reference phase left after per-pass
  calibration, ``theta ~ Normal(0, reference_phase_rad^2)`` per (pass, sample).
- ``model``: ``monitors`` (every tap read from a copy of the noise-free field with the full
  budget ``N``) or ``reload`` (a measure-and-reload rig: each hop is its own shot and loads
  the measured field; :mod:`optics.diffractive.reload`). docs/design.md section 4.

``level`` scales the noise: photon budget ``N / level^2`` (shot noise relative amplitude
grows like ``level``), read noise, ADC step and reference phase linearly. Level 0 or
``photons_per_sample=inf`` with the others 0 is a noiseless measurement.

Noise is keyed by (chip seed, round, pass, sample, tap) through NumPy's SeedSequence,
never by clock, so a re-run round reproduces exactly. Tap ids: a layer's field is keyed by
the layer index 0..L-1; every other stream has a named id in :class:`Tap`. On CuPy one stream per
(seed, round, pass, tap, batch) is used instead (the same batch reproduces exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np

from optics.core.holographic_noise import NOISE_SCHEMES, quadrature_noise_std
from optics.core.validate import check_choice, check_nonnegative

PASS_IDS = {"data": 0, "error": 1, "inference": 2}
#: ``MeasurementSpec.model``: how a chip's taps are measured (docs/design.md section 4.5)
MEASUREMENT_MODELS = ("monitors", "reload")


class Tap(IntEnum):
    """Tap ids of the named noise streams (part of the noise key: never renumber them).

    Layer taps are the layer index ``0..L-1`` and must stay below the smallest named id
    (98), or two streams of one pass would share a key: a diffractive chip may have at most
    98 layers (the scattering medium has one tap, 0). An MZI mesh reads all its in-mesh taps
    as one frame keyed by tap 0; :data:`optics.mesh.layout.MAX_MODES` keeps even its
    ``4N + 2`` traversals below its named ids (998, 999).
    """

    INPUT_ERROR = 98  # error-pass field at the input plane (``to_input``)
    DETECTOR = 99  # data-pass complex field at the detector / camera plane
    MESH_ERROR_OUTPUT = 998  # MZI mesh: error-pass output modes
    MESH_OUTPUT = 999  # MZI mesh: data-pass output modes
    SHOT = 1000  # Poisson shot noise of the detected intensity
    READ = 1001  # read noise of the detected intensity
    REFERENCE = 2000  # residual holographic reference phase, one per (pass, sample)


@dataclass(frozen=True)
class MeasurementSpec:
    """Detector knobs at level 1 (Taichi-II's cameras: QE 0.64, dark noise 2.47 e-)."""

    level: float = 1.0
    # photons per sample entering the chip: 1e7 is 0.16 nW over one 24 ms frame at 532 nm
    photons_per_sample: float = 1e7
    quantum_efficiency: float = 0.64
    read_noise_e: float = 2.5
    adc_bits: int = 12
    reference_phase_rad: float = 0.05
    reference_e_per_px: float = 100.0
    # holographic scheme of every complex tap: homodyne | 3-step | 4-step | off-axis
    holography: str = "4-step"
    # monitors: each tap read off a copy of the noise-free field with the full budget;
    # reload: measure-and-reload, every hop its own shot (optics.diffractive.reload)
    model: str = "monitors"

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name not in ("photons_per_sample", "holography", "model"):
                check_nonnegative(f.name, getattr(self, f.name))
        check_choice("holography", self.holography, NOISE_SCHEMES)
        check_choice("model", self.model, MEASUREMENT_MODELS)
        if not self.photons_per_sample > 0:
            raise ValueError(f"photons_per_sample must be > 0 (inf: no shot noise), got {self.photons_per_sample}")
        if not 0 < self.quantum_efficiency <= 1:
            raise ValueError(f"quantum_efficiency must be in (0, 1], got {self.quantum_efficiency}")
        if int(self.adc_bits) != self.adc_bits or self.adc_bits > 24:
            raise ValueError(f"adc_bits must be an integer in 0..24 (0: no ADC), got {self.adc_bits}")

    @property
    def photoelectrons(self) -> float:
        """Effective ``QE N`` at this level (inf when noiseless)."""
        if self.level == 0:
            return math.inf
        return self.quantum_efficiency * self.photons_per_sample / self.level**2

    @property
    def noiseless(self) -> bool:
        return self.level == 0 or (
            math.isinf(self.photons_per_sample)
            and self.read_noise_e == 0
            and self.adc_bits == 0
            and self.reference_phase_rad == 0
        )

    @classmethod
    def off(cls) -> MeasurementSpec:
        return cls(level=0.0)


@dataclass(frozen=True)
class PassKey:
    """What makes a measurement's noise: training round, pass, sample ids and chip seed.

    Callers give round, pass and samples; a simulated chip fills in its own seed.
    """

    round: int
    pass_name: str
    samples: tuple
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pass_name not in PASS_IDS:
            raise ValueError(f"pass_name must be one of {tuple(PASS_IDS)}, got {self.pass_name!r}")

    def stream(self, sample: int, tap: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.round, PASS_IDS[self.pass_name], int(sample), int(tap)])


def _normals(key: PassKey, tap: int, shape: tuple, backend):
    """Standard normals (B, *shape) in the real dtype, sample b drawn from its own keyed stream."""
    dt = backend.real_dtype
    if backend.name == "cupy":
        ss = np.random.SeedSequence([key.seed, key.round, PASS_IDS[key.pass_name], int(tap), *key.samples])
        rs = backend.xp.random.RandomState(int(ss.generate_state(1)[0]))
        return rs.standard_normal((len(key.samples),) + shape, dtype=dt)
    out = np.empty((len(key.samples),) + shape, dtype=dt)
    for b, sample in enumerate(key.samples):
        key.stream(sample, tap).standard_normal(shape, dtype=np.dtype(dt).type, out=out[b])
    return out


def _quantise_(x, step) -> None:
    """Round real array ``x`` to multiples of ``step`` in place."""
    x /= step
    np.rint(x, out=x)
    x *= step


def measure_intensity(intensity, spec: MeasurementSpec, key: PassKey, backend):
    """Detected intensity (B, n, n) with shot noise, read noise and ADC, in normalised units."""
    if spec.noiseless:
        return intensity
    xp, qn = backend.xp, spec.photoelectrons
    e = intensity
    if math.isfinite(qn):
        lam = backend.to_numpy(intensity).astype(np.float64) * qn
        shot = np.stack([key.stream(s, Tap.SHOT).poisson(np.clip(lam[i], 0, None)) for i, s in enumerate(key.samples)])
        e = backend.asarray(shot, backend.real_dtype)
        if spec.read_noise_e > 0:
            e = e + (spec.level * spec.read_noise_e) * _normals(key, Tap.READ, intensity.shape[1:], backend)
        e = xp.clip(e, 0, None).astype(backend.real_dtype)
        if spec.adc_bits > 0:
            peak = e.reshape(e.shape[0], -1).max(axis=1).reshape(-1, 1, 1)
            _quantise_(e, xp.maximum(peak, 1e-30) * (spec.level / (2**spec.adc_bits - 1)))
        e = e / qn
    return e.astype(backend.real_dtype, copy=False)


def field_noise_std(spec: MeasurementSpec) -> tuple[float, float]:
    """``(std Re, std Im)`` of a tap measured at unit power, normalised units (module docstring)."""
    read_e = spec.level * spec.read_noise_e
    return quadrature_noise_std(spec.holography, spec.photoelectrons, spec.reference_e_per_px, read_e)


def _quadrature_sigma(spec: MeasurementSpec, backend):
    """The per-quadrature std as a float (equal quadratures: the homodyne bound's exact arithmetic)
    or a (2,) real array (re, im) that broadcasts over the last axis of the (re, im) pairs."""
    std_re, std_im = field_noise_std(spec)
    if std_re == std_im:
        return std_re
    return backend.xp.asarray([std_re, std_im], dtype=backend.real_dtype)


def measure_field_(field, spec: MeasurementSpec, key: PassKey, tap: int, backend, scale=None, rotation=None) -> None:
    """Turn ``field`` (B, n, n, owned by the caller) into its holographic measurement, in place.

    ``scale`` (B, 1, 1) is the per-sample amplitude the field was sent with (error pass:
    the error field is normalised to unit power for the optical pass); noise is relative
    to the photon budget at that power. ``rotation`` (B, 1, 1) is the pass's residual
    reference phase factor from :func:`reference_rotation` (None: no residual).
    """
    if spec.noiseless:
        return
    xp, qn = backend.xp, spec.photoelectrons
    pairs = field.view(backend.real_dtype).reshape(field.shape + (2,))  # (re, im) views of ``field``
    if math.isfinite(qn):
        noise = _normals(key, tap, tuple(field.shape[1:]) + (2,), backend)
        sigma = _quadrature_sigma(spec, backend)
        noise *= sigma if scale is None else scale.real[..., None] * sigma
        pairs += noise
    if spec.adc_bits > 0:
        peak = xp.abs(pairs).reshape(field.shape[0], -1).max(axis=1).reshape(-1, 1, 1, 1)
        _quantise_(pairs, xp.maximum(peak, 1e-30) * (spec.level / (2 ** (spec.adc_bits - 1))))
    if rotation is not None:
        field *= rotation


def reference_rotation(spec: MeasurementSpec, key: PassKey, backend):
    """``exp(i theta)`` (B, 1, 1): the residual holographic reference phase of this pass,
    ``theta ~ Normal(0, (level * reference_phase_rad)^2)`` per sample; None when there is none."""
    if spec.noiseless or spec.reference_phase_rad == 0:
        return None
    rad = spec.level * spec.reference_phase_rad
    th = np.array([key.stream(s, Tap.REFERENCE).standard_normal() * rad for s in key.samples])
    return backend.asarray(np.exp(1j * th).reshape(-1, 1, 1), backend.complex_dtype)


def check_spec_names(spec_cls, values: dict) -> None:
    """One-line error for unknown knob names in a dict meant for ``spec_cls``."""
    known = {f.name for f in fields(spec_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {spec_cls.__name__} option(s) {unknown}; known: {sorted(known)}")
