"""Xue et al. 2024's deep network: the scaled MSE to a detector pattern (exact gradient, finite
differences in float64), the per-sample gradient rescale, the band-limited padding guardrail and
the paper's detector layout."""

import warnings

import numpy as np
import pytest

from optics.core.ffm import Objective, forward_only_step, rescaled_sample_mean, target_patterns, true_gradient
from optics.core.losses import scaled_mse_to_pattern
from optics.core.measurement import MeasurementSpec
from optics.core.pat import physics_aware_step
from optics.core.propagation import (
    SamplingWarning,
    band_limit_loss,
    band_limited_spread_px,
    choose_padded_size,
    min_pad_px,
    spread_px,
)
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.detectors import make_detectors
from optics.diffractive.geometry import Geometry, detector_corners
from optics.diffractive.imperfections import HardwareSpec

TINY = Geometry.xue2024(n=40, n_layers=2, distance=0.0025)
PAPER = dict(pitch=8e-6, wavelength=532e-9, distance=0.388)


def _batch(rng, g, b=3):
    x = rng.random((b, g.n, g.n)) * (rng.random((1, g.n, g.n)) > 0.3)
    return x / np.sqrt((x**2).sum(axis=(1, 2), keepdims=True)), rng.integers(0, g.n_classes, b)


def test_scaled_mse_gradient_matches_finite_differences(rng):
    """dL/dI = (2 / (B P)) s* (s* I - T) with s* = <I,T>/<I,I>: the s*-dependence drops out (envelope
    theorem); central differences in float64 agree to 1e-7 relative, on random pixels of every sample."""
    b, n = 3, 6
    intensity, pattern = rng.random((b, n, n)), (rng.random((b, n, n)) > 0.7).astype(float)
    loss, grad = scaled_mse_to_pattern(intensity, pattern)
    h = 1e-6
    for _ in range(12):
        idx = (rng.integers(b), rng.integers(n), rng.integers(n))
        up, dn = intensity.copy(), intensity.copy()
        up[idx] += h
        dn[idx] -= h
        fd = (scaled_mse_to_pattern(up, pattern)[0] - scaled_mse_to_pattern(dn, pattern)[0]) / (2 * h)
        assert abs(fd - grad[idx]) <= 1e-7 * np.abs(grad).max()
    s = (intensity * pattern).sum(axis=(1, 2)) / (intensity**2).sum(axis=(1, 2))
    assert loss == pytest.approx(((s[:, None, None] * intensity - pattern) ** 2).mean())
    dark = np.zeros((1, n, n))
    assert scaled_mse_to_pattern(dark, pattern[:1])[1].max() == 0  # a dark sample: s* = 0, no gradient


def test_scaled_mse_objective_and_ffm_phase_gradient_match_finite_differences(be128, rng):
    """The whole chain on a complex128 twin: the FFM step's phase gradient of the scaled MSE to the
    label's detector pattern equals central differences of the loss to 1e-6; accuracy is counted."""
    obj = Objective("scaled_mse")
    twin = DigitalTwin(TINY, be128)
    phases = rng.uniform(0, 2 * np.pi, TINY.phase_shape)
    twin.program(phases)
    x, y = _batch(rng, TINY)
    step = forward_only_step(twin, x, y, obj, 0, range(3))
    assert 0 <= step.n_correct <= 3 and step.scores.shape == (3, 10)

    def loss(p):
        twin.program(p)
        return obj(twin.data_pass(x).intensity, y, twin.detectors)[0]

    h = 1e-6
    for _ in range(6):
        idx = (rng.integers(TINY.n_layers), rng.integers(10, 30), rng.integers(10, 30))
        up, dn = phases.copy(), phases.copy()
        up[idx] += h
        dn[idx] -= h
        fd = (loss(up) - loss(dn)) / (2 * h)
        assert abs(fd - step.grad_phase[idx]) <= 1e-6 * np.abs(step.grad_phase).max()


def test_target_patterns_are_the_label_detector_regions(be128):
    det = make_detectors(TINY, be128)
    t = target_patterns(np.array([0, 9]), det, np.float64)
    assert t.shape == (2, TINY.n, TINY.n) and t.sum(axis=(1, 2)).tolist() == [TINY.detector_px**2] * 2
    (y0, x0), d = detector_corners(TINY)[9], TINY.detector_px
    assert t[1, y0 : y0 + d, x0 : x0 + d].min() == 1


def test_per_sample_rescale_is_the_mean_of_rescaled_single_sample_gradients(be128, rng):
    """With per_sample_grad_max, each sample's layer gradient is scaled to that max, then averaged:
    equal to the mean of single-sample steps each scaled by hand; the same in parts, through PAT too."""
    obj = Objective("scaled_mse", per_sample_grad_max=0.02)
    plain = Objective("scaled_mse")
    twin = DigitalTwin(TINY, be128)
    phases = rng.uniform(0, 2 * np.pi, TINY.phase_shape)
    twin.program(phases)
    x, y = _batch(rng, TINY, 4)
    want = np.zeros(TINY.phase_shape)
    for i in range(4):
        g = forward_only_step(twin, x[i : i + 1], y[i : i + 1], plain, 0, [i]).grad_phase
        want += 0.02 * g / np.abs(g).max(axis=(1, 2), keepdims=True) / 4
    for parts in (None, 3):
        got = forward_only_step(twin, x, y, obj, 0, range(4), samples_per_pass=parts).grad_phase
        assert np.allclose(got, want, rtol=1e-10, atol=1e-14)
        assert np.abs(got).max() <= 0.02 + 1e-15
    chip = SimulatedChip(TINY, HardwareSpec(level=0.0), MeasurementSpec.off(), seed=3, backend=be128)
    chip.program(phases)
    pat = physics_aware_step(chip, twin, x, y, obj, 0, range(4)).grad_phase
    assert np.allclose(pat, true_gradient(chip, x, y, obj).grad_phase, rtol=1e-8, atol=1e-14)


def test_rescaled_sample_mean_leaves_a_dark_sample_at_zero(be128):
    u = np.ones((2, 3, 4, 4), complex)
    eps = np.zeros_like(u)
    eps[:, 0] = 1j
    out = rescaled_sample_mean(u, eps, 0.5)
    assert np.allclose(out, -0.5 / 3)  # sample 0 scaled to |max| 0.5, samples 1 and 2 contribute 0


def test_padding_guardrail_measures_the_spread_inside_the_band_limit():
    """The paper's 800 x 800 grid: the full bandwidth spreads 1614 px per side (automatic padding
    picks 2016), the band limit of an 800 grid keeps n_pad / 2 = 400: pad = 200 is exactly enough,
    no warning; below pad = n / 6 it is refused, between the two it warns."""
    assert spread_px(**PAPER) == pytest.approx(1613.5, abs=0.1)
    assert choose_padded_size(400, **PAPER) == 2016
    assert band_limited_spread_px(800, **PAPER) == pytest.approx(400.0)
    assert min_pad_px(400, **PAPER) == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_padded_size(400, **PAPER, pad=200) == 800
    with pytest.warns(SamplingWarning, match="inside the band limit"):
        choose_padded_size(400, **PAPER, pad=100)
    with pytest.raises(ValueError, match="use pad >= 200"):
        choose_padded_size(400, **PAPER, pad=60)
    # the reference geometry is not band-limited: its guardrail is unchanged
    assert band_limited_spread_px(264, 36e-6, 532e-9, 0.3) >= spread_px(36e-6, 532e-9, 0.3)


def test_band_limit_loss_flat_spectrum_and_smooth_field():
    """On the paper's grid the band limit keeps |f| <= 15.5 of 62.5 cycles/mm per axis: a flat spectrum
    loses 1 - (2 x 124 / 800)^2 = 93.8% per hop; a smooth (upsampled) image far less."""
    assert band_limit_loss(800, **PAPER) == pytest.approx(0.938, abs=0.002)
    y, x = np.mgrid[-200:200, -200:200]
    smooth = np.exp(-(x**2 + y**2) / (2 * 60.0**2))
    assert band_limit_loss(800, **PAPER, field=smooth) < 1e-6
    assert band_limit_loss(264, 36e-6, 532e-9, 0.3) == 0.0


def test_xue2024_geometry_and_detector_layout():
    g = Geometry.xue2024()
    assert (g.n, g.n_layers, g.pitch, g.distance, g.pad, g.object_px, g.detector_px) == (
        400,
        8,
        8e-6,
        0.388,
        200,
        392,
        40,
    )
    assert g.n_layers * g.n * g.n == 1_280_000
    assert detector_corners(g)[4] == (170, 156) and len(detector_corners(g)) == 10
    with pytest.raises(ValueError, match="detector_layout=xue2024 has 10 detectors"):
        Geometry.xue2024(n_classes=4)
    with pytest.raises(ValueError, match="overlap"):
        Geometry.xue2024(detector_px=70)
    with pytest.raises(ValueError, match="detector_layout must be one of"):
        Geometry.reference(detector_layout="grid")


def _idx(path, array):
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_per_class_keeps_the_first_samples_of_each_class(tmp_path, rng):
    """The paper's subset: the first k training and e evaluation images per class, in file order."""
    from optics.core.data import load_digits_split, load_idx

    labels = np.tile(np.arange(10), 30)  # 30 per class
    for prefix, n in (("train", 300), ("t10k", 100)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels[:n])
    split = load_idx(str(tmp_path), 0, 0.2, per_class=(5, 2))
    for ds, k in ((split.train, 5), (split.val, 2), (split.test, 2)):
        assert np.bincount(ds.labels, minlength=10).tolist() == [k] * 10
    assert split.test.ids.tolist() == list(range(300, 320))  # the first two of each class in the test file
    full = load_idx(str(tmp_path), 0, 0.2)
    first5 = np.concatenate([full.train.ids[full.train.labels == c][:5] for c in range(10)])
    assert np.array_equal(split.train.ids, np.sort(first5))
    digits = load_digits_split(0, per_class=(1000, 10))
    assert len(digits.train) == len(load_digits_split(0).train) and len(digits.test) == 100
