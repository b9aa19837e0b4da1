"""The keyed camera noise: Philox known answers, statistics, keying, and the compiled kernels
against the array-code reference, bit for bit."""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from optics import get_backend
from optics.core import keyed_rng as ref
from optics.core import measurement
from optics.core.measurement import MeasurementSpec, PassKey, Tap, measure_field_, measure_intensity

pytest.importorskip("numba", reason="Numba is not installed")
kernels = measurement.noise_kernels()
KEY = ref.noise_key(7, 3, 0, 2)


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [  # Random123's known-answer vectors for Philox4x32-10
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    words = ref.philox4x32(*(np.uint32(c) for c in counter), key)
    assert tuple(int(w) for w in words) == expected


def test_normals_are_standard_and_independent():
    """Mean, variance, shape (KS), and no correlation between neighbours, samples or taps."""
    samples = np.arange(4)
    x = ref.normals(KEY, samples, 250_002).astype(np.float64)
    other_tap = ref.normals(ref.noise_key(7, 3, 0, 3), samples, 250_002).astype(np.float64)
    n = x.size
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n)
    assert stats.kstest(x.ravel(), "norm").pvalue > 1e-4
    bound = 5 / math.sqrt(x.shape[1])
    for a, b in [(x[0, :-1], x[0, 1:]), (x[0, 0::2], x[0, 1::2]), (x[0], x[1]), (x[2], other_tap[2])]:
        assert abs(np.corrcoef(a, b)[0, 1]) < bound
    assert 4.5 < np.abs(x).max() < 6.8  # the tails are there (Box-Muller from 32-bit words reaches 6.8)


@pytest.mark.parametrize("lam", [0.0, 0.3, 3.3, 9.99, 10.0, 47.5, 2.5e4])
def test_poisson_mean_variance_and_shape(lam):
    n = 200_000
    k = ref.poisson(KEY, [11], np.full((1, n), lam))[0]
    assert np.all(k == np.floor(k)) and k.min() >= 0
    sd = math.sqrt(lam / n) if lam else 0
    assert abs(k.mean() - lam) <= 5 * sd
    assert abs(k.var() - lam) <= 5 * lam * math.sqrt(2 / n) + 5 * sd + 1e-12
    if 0 < lam < 100:  # chi-square against the pmf over the bulk of the distribution
        values = np.arange(max(0, int(lam - 4 * math.sqrt(lam))), int(lam + 4 * math.sqrt(lam)) + 2)
        observed = np.array([(k == v).sum() for v in values])
        expected = stats.poisson.pmf(values, lam) * n
        keep = expected > 20
        chi2 = (((observed - expected) ** 2) / expected)[keep].sum()
        assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4


def test_kernel_normals_and_poisson_equal_the_reference():
    samples = np.array([5, 2**33 + 7, 0, 123456789], np.int64)
    lo, hi = ref.split_sample(samples)
    out = np.empty((4, 1003), np.float32)
    kernels.normals_rows(out, lo, hi, *KEY)
    np.testing.assert_array_equal(out, ref.normals(KEY, samples, 1003))
    lam = np.abs(np.random.default_rng(0).normal(0, 40, (4, 3000))) * (np.arange(3000) % 3 > 0)
    counts = np.empty_like(lam)
    kernels.poisson_rows(counts, lam, lo, hi, *KEY)
    np.testing.assert_array_equal(counts, ref.poisson(KEY, samples, lam))


def test_kernel_poisson_equals_the_reference_through_every_stage():
    # means just below 10 need every inversion stage (8 terms, then 4 at a time up to 24) and a
    # few pixels the scalar search past 24 terms; means at 10 reject PTRS attempts most often
    samples = np.array([11, 12], np.int64)
    lo, hi = ref.split_sample(samples)
    lam = np.tile(np.repeat([9.999, 10.0, 0.0, 1e-9, 0.5], 20000), (2, 1))
    counts = np.empty_like(lam)
    kernels.poisson_rows(counts, lam, lo, hi, *KEY)
    np.testing.assert_array_equal(counts, ref.poisson(KEY, samples, lam))
    below = counts[:, :20000]
    assert (below >= 24).any() and ((below >= 8) & (below < 24)).mean() > 0.3
    assert (counts[:, 40000:60000] == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("adc", "rotate"), [(0.0, False), (1 / 2048, False), (1 / 2048, True), (0.0, True)])
def test_kernel_taps_equal_the_reference(dtype, adc, rotate):
    rng = np.random.default_rng(1)
    lo, hi = ref.split_sample(np.array([3, 9, 2**40, 1]))
    pairs = rng.normal(size=(4, 2 * 37)).astype(dtype)  # 37 complex values: a partial last block
    gains = np.array([[0.01, 0.02], [0, 0], [0.5, 0.5], [1e-4, 3e-4]], dtype)
    rotation = np.array([[math.cos(a), math.sin(a)] for a in (0.1, -0.2, 3.0, 0.0)], dtype)
    rotation = rotation if rotate else np.zeros((0, 2), dtype)
    compiled, reference = pairs.copy(), pairs.copy()
    kernels.measure_rows(compiled, lo, hi, *KEY, gains, dtype(adc), rotation)
    ref.measure_rows_(reference, lo, hi, KEY, gains, dtype(adc), rotation)
    np.testing.assert_array_equal(compiled, reference)
    assert not np.array_equal(compiled[0], pairs[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_frames_equal_the_reference(dtype):
    rng = np.random.default_rng(2)
    lo, hi = ref.split_sample(np.array([4, 8]))
    intensity = (rng.random((2, 900)) ** 4 / 90).astype(dtype)
    keys = ref.noise_key(1, 2, 0, int(Tap.SHOT)), ref.noise_key(1, 2, 0, int(Tap.READ))
    out = np.empty_like(intensity)
    args = (1e5, dtype(2.5), dtype(1 / 4095))
    kernels.detect_rows(
        out, intensity, lo, hi, *(np.array(k, np.uint32) for k in keys), *args, np.empty(900, np.float32)
    )
    np.testing.assert_array_equal(out, ref.detect_rows(intensity, lo, hi, *keys, *args))


def _measured(backend, samples, field, tap=1, round_=5):
    """``field`` (B, n, n) measured as error-pass taps of ``samples``; each sample's amplitude
    depends on its id only."""
    out = field.astype(backend.complex_dtype)
    key = PassKey(round_, "error", tuple(samples), seed=11)
    spec = MeasurementSpec(level=2.0)
    scale = np.array([0.5 + (s % 7) / 4 for s in samples]).reshape(-1, 1, 1)
    measure_field_(out, spec, key, tap, backend, scale, measurement.reference_rotation(spec, key, backend))
    return out


def test_a_samples_noise_is_keyed_by_its_id_not_its_place_or_worker(rng):
    """A sample gets the same noise in any batch, order or number of block workers."""
    field = (rng.normal(size=(6, 24, 24)) + 1j * rng.normal(size=(6, 24, 24))) / 24
    samples = [40, 3, 17, 99, 5, 2**35]
    one = _measured(get_backend("numpy", "complex64", fft_threads=1), samples, field)
    two = _measured(get_backend("numpy", "complex64", fft_threads=2), samples, field)
    np.testing.assert_array_equal(one, two)
    order = [4, 0, 5]
    other_batch = _measured(get_backend("numpy", "complex64", fft_threads=2), [samples[i] for i in order], field[order])
    np.testing.assert_array_equal(other_batch, one[order])
    assert not np.array_equal(_measured(get_backend("numpy", "complex64"), samples, field, tap=2), one)
    assert not np.array_equal(_measured(get_backend("numpy", "complex64"), samples, field, round_=6), one)


def test_numpy_fallback_draws_the_same_bits(monkeypatch, rng, be64):
    """Without Numba the array-code reference measures taps and frames identically."""
    field = (rng.normal(size=(3, 20, 20)) + 1j * rng.normal(size=(3, 20, 20))) / 20
    intensity = (rng.random((3, 20, 20)) ** 3 / 40).astype(np.float32)
    key = PassKey(2, "data", (1, 2, 3), seed=4)

    def both():
        f = _measured(be64, [1, 2, 3], field)
        return f, be64.to_numpy(measure_intensity(intensity, MeasurementSpec(), key, be64))

    compiled = both()
    monkeypatch.setattr(measurement, "noise_kernels", lambda: None)
    reference = both()
    for c, r in zip(compiled, reference, strict=True):
        np.testing.assert_array_equal(c, r)


def test_streams_reproduce_in_another_process():
    code = (
        "import numpy as np; from optics.core.measurement import *; from optics import get_backend;"
        "b = get_backend('numpy', 'complex64');"
        "print(keyed_normals(PassKey(4, 'data', (9, 2), 3), 1, (5,), b).tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    here = measurement.keyed_normals(PassKey(4, "data", (9, 2), 3), 1, (5,), get_backend("numpy", "complex64"))
    assert out == here.tobytes().hex()


def test_noisy_frame_statistics_follow_the_spec(be64):
    """Shot and read noise of a flat frame: mean and variance in electrons as the model states."""
    spec = MeasurementSpec(photons_per_sample=1e6, adc_bits=0)
    qn, pixels = spec.photoelectrons, 64 * 64
    intensity = np.full((8, 64, 64), 1 / pixels, np.float32)
    e = be64.to_numpy(measure_intensity(intensity, spec, PassKey(0, "data", tuple(range(8)), 1), be64)) * qn
    lam = qn / pixels
    assert abs(e.mean() - lam) < 5 * math.sqrt((lam + 2.5**2) / e.size)
    assert abs(e.var() / (lam + 2.5**2) - 1) < 5 * math.sqrt(2 / e.size)
