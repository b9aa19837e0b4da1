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

Noise is keyed by (chip seed, round, pass, sample, tap), never by clock, so a re-run round
reproduces exactly, and a sample's noise does not depend on its place in a batch, shard or
worker: a counter-based generator (Philox4x32-10, :mod:`optics.core.keyed_rng`) keyed by
(seed, round, pass, tap) with the counter built from (sample id, element), drawn by compiled
kernels (:mod:`optics.core.noise_kernels`) inside the block workers, or by the same array code
on CuPy and where Numba is missing (same bits). Tap ids: a layer's field is keyed by the layer
index 0..L-1; every other stream has a named id in :class:`Tap`. :data:`NOISE_STREAM_VERSION`
names the streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import IntEnum
from types import SimpleNamespace

import numpy as np

from optics.core import keyed_rng
from optics.core.holographic_noise import NOISE_SCHEMES, quadrature_noise_std
from optics.core.validate import check_choice, check_nonnegative

PASS_IDS = {"data": 0, "error": 1, "inference": 2}
#: Version of the noise streams (how keys map to values): checkpoints and run fingerprints carry
#: it, and a resume refuses a checkpoint written with other streams. 1: a NumPy ``default_rng`` per
#: (seed, round, pass, sample, tap); 2: counter-based Philox4x32-10 (:mod:`optics.core.keyed_rng`).
NOISE_STREAM_VERSION = 2
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

    def philox_key(self, tap: int) -> tuple[int, int]:
        """The counter-based generator's key of this pass's stream ``tap`` (:mod:`optics.core.keyed_rng`)."""
        return keyed_rng.noise_key(self.seed, self.round, PASS_IDS[self.pass_name], int(tap))

    def sample_words(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` uint32 words (B,) of the sample ids: the generator's per-sample counter."""
        return keyed_rng.split_sample(self.samples)


_KERNELS: list = []


def noise_kernels():
    """:mod:`optics.core.noise_kernels` (Numba), or None where Numba cannot be imported: the NumPy
    reference (:mod:`optics.core.keyed_rng`) then draws the same streams, several times slower."""
    if not _KERNELS:
        try:
            from optics.core import frame_kernels, noise_kernels
        except ImportError:
            _KERNELS.append(None)
        else:
            _KERNELS.append(
                SimpleNamespace(
                    normals_rows=noise_kernels.normals_rows,
                    measure_rows=noise_kernels.measure_rows,
                    poisson_rows=frame_kernels.poisson_rows,
                    detect_rows=frame_kernels.detect_rows,
                )
            )
    return _KERNELS[0]


def _rows_in_workers(backend, rows: int, work) -> None:
    """``work(part)`` over contiguous parts of ``range(rows)``, one per block worker (the kernels
    release the GIL)."""
    backend.map_split(lambda part, worker: work(part), rows)


def keyed_normals(key: PassKey, tap: int, shape: tuple, backend):
    """Standard normals (B, *shape) in the backend's real dtype, sample ``key.samples[b]`` keyed alone."""
    count, rows = math.prod(shape), len(key.samples)
    k, (lo, hi) = key.philox_key(tap), key.sample_words()
    kernels = noise_kernels()
    if backend.name == "cupy" or kernels is None:
        xp = backend.xp
        out = keyed_rng.normals_words(k, xp.asarray(lo), xp.asarray(hi), count)
    else:
        out = np.empty((rows, count), np.float32)
        _rows_in_workers(backend, rows, lambda part: kernels.normals_rows(out[part], lo[part], hi[part], *k))
    return out.astype(backend.real_dtype, copy=False).reshape((rows,) + tuple(shape))


def keyed_poisson(key: PassKey, tap: int, lam, backend):
    """Poisson counts (B, *lam.shape[1:]) of means ``lam`` (B rows, >= 0), sample ``key.samples[b]`` keyed alone."""
    lam = np.ascontiguousarray(backend.to_numpy(lam), dtype=np.float64)
    flat = lam.reshape(lam.shape[0], -1)
    k, (lo, hi) = key.philox_key(tap), key.sample_words()
    kernels = noise_kernels()
    if kernels is None:
        counts = keyed_rng.poisson_words(k, lo, hi, flat)
    else:
        counts = np.empty_like(flat)
        _rows_in_workers(
            backend, len(flat), lambda part: kernels.poisson_rows(counts[part], flat[part], lo[part], hi[part], *k)
        )
    return backend.asarray(counts.reshape(lam.shape), backend.real_dtype)


def measure_intensity(intensity, spec: MeasurementSpec, key: PassKey, backend):
    """Detected intensity (B, n, n) with shot noise, read noise and ADC, in normalised units."""
    qn = spec.photoelectrons
    if spec.noiseless or not math.isfinite(qn):
        return intensity
    dt = np.dtype(backend.real_dtype).type
    flat = np.ascontiguousarray(backend.to_numpy(intensity), dtype=dt).reshape(intensity.shape[0], -1)
    shot_key, read_key = key.philox_key(Tap.SHOT), key.philox_key(Tap.READ)
    (lo, hi), read_std = key.sample_words(), dt(spec.level * spec.read_noise_e)
    fraction = dt(spec.level / (2**spec.adc_bits - 1)) if spec.adc_bits > 0 else dt(0)
    kernels = noise_kernels()
    if kernels is None:
        out = keyed_rng.detect_rows(flat, lo, hi, shot_key, read_key, qn, read_std, fraction)
    else:
        out = np.empty_like(flat)
        keys = np.array(shot_key, np.uint32), np.array(read_key, np.uint32)

        def detect(part):
            scratch = np.empty(flat.shape[1], np.float32)
            kernels.detect_rows(out[part], flat[part], lo[part], hi[part], *keys, qn, read_std, fraction, scratch)

        _rows_in_workers(backend, len(flat), detect)
    return backend.asarray(out.reshape(intensity.shape), backend.real_dtype)


def field_noise_std(spec: MeasurementSpec) -> tuple[float, float]:
    """``(std Re, std Im)`` of a tap measured at unit power, normalised units (module docstring)."""
    read_e = spec.level * spec.read_noise_e
    return quadrature_noise_std(spec.holography, spec.photoelectrons, spec.reference_e_per_px, read_e)


def measure_field_(field, spec: MeasurementSpec, key: PassKey, tap: int, backend, scale=None, rotation=None) -> None:
    """Turn ``field`` (B, n, n, owned by the caller) into its holographic measurement, in place.

    ``scale`` (B, 1, 1) is the per-sample amplitude the field was sent with (error pass:
    the error field is normalised to unit power for the optical pass); noise is relative
    to the photon budget at that power. ``rotation`` (B, 1, 1) is the pass's residual
    reference phase factor from :func:`reference_rotation` (None: no residual).
    Per sample: ``x + g_q n`` per quadrature ``q`` (``g_q`` = scale times :func:`field_noise_std`),
    the ADC over the frame's peak (``2^(bits-1)`` levels a sign), then the rotation
    (:func:`optics.core.noise_kernels.measure_rows`).
    """
    if spec.noiseless:
        return
    xp, dt, rows = backend.xp, np.dtype(backend.real_dtype).type, field.shape[0]
    if not field.flags.c_contiguous:
        raise ValueError("measure_field_ measures in place: pass a C-contiguous field (np.ascontiguousarray)")
    pairs = field.view(backend.real_dtype).reshape(rows, -1)  # (re, im) rows: a view of ``field``
    gains = _gains(spec, scale, rows, backend)
    fraction = dt(spec.level / 2 ** (spec.adc_bits - 1)) if spec.adc_bits > 0 else dt(0)
    rot = np.zeros((0, 2), dt)
    if rotation is not None:
        r = backend.to_numpy(rotation).reshape(-1)
        rot = np.stack([r.real, r.imag], axis=1).astype(dt)
    k, (lo, hi) = key.philox_key(tap), key.sample_words()
    kernels = noise_kernels()
    if backend.name == "cupy" or kernels is None:
        keyed_rng.measure_rows_(pairs, xp.asarray(lo), xp.asarray(hi), k, xp.asarray(gains), fraction, xp.asarray(rot))
        return

    def measure(part):
        kernels.measure_rows(pairs[part], lo[part], hi[part], *k, gains[part], fraction, rot[part] if len(rot) else rot)

    _rows_in_workers(backend, rows, measure)


def _gains(spec: MeasurementSpec, scale, rows: int, backend) -> np.ndarray:
    """``g`` (B, 2) in the real dtype: the per-quadrature noise std of each sample (zeros: no shot noise)."""
    sigma = np.asarray(field_noise_std(spec), np.float64)
    amplitude = np.ones(rows) if scale is None else backend.to_numpy(scale).real.reshape(-1).astype(np.float64)
    return np.ascontiguousarray(amplitude[:, None] * sigma[None, :], dtype=backend.real_dtype)


def reference_rotation(spec: MeasurementSpec, key: PassKey, backend):
    """``exp(i theta)`` (B, 1, 1): the residual holographic reference phase of this pass,
    ``theta ~ Normal(0, (level * reference_phase_rad)^2)`` per sample (the first value of its
    stream :attr:`Tap.REFERENCE`); None when there is none."""
    if spec.noiseless or spec.reference_phase_rad == 0:
        return None
    rad = spec.level * spec.reference_phase_rad
    lo, hi = key.sample_words()
    th = keyed_rng.normals_words(key.philox_key(Tap.REFERENCE), lo, hi, 1)[:, 0].astype(np.float64) * rad
    return backend.asarray(np.exp(1j * th).reshape(-1, 1, 1), backend.complex_dtype)


def check_spec_names(spec_cls, values: dict) -> None:
    """One-line error for unknown knob names in a dict meant for ``spec_cls``."""
    known = {f.name for f in fields(spec_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {spec_cls.__name__} option(s) {unknown}; known: {sorted(known)}")
