"""Holography from camera frames: exact without noise, and the noise budget under Poisson frames.

Noise tests: the field carries ``QE N = 1e6`` photoelectrons in total, the reference is real
(``R = 100`` e-/px per frame, so the quadratures of ``C = E conj(R)`` are those of ``E``), read
noise 2.5 e-. The frames are Poisson in electrons plus Gaussian read noise. The strong-reference
budget leaves out the signal's own shot noise, so the expected rms error per quadrature is::

    quadrature_noise_std * sqrt(1 + <|E|^2> / (R + r^2))     <|E|^2>: signal e- per pixel per frame

(the cross term ``2 Re(E conj(R) exp(i d_k))`` of the frame variance averages to 0 over
pixels of a random-phase field). The rms over ``P`` independent pixels estimates a std with
relative error ``1 / sqrt(2 P)``; off-axis noise is filtered to the disc, whose ``f P``
independent frequency bins give a relative error ``1 / (2 sqrt(f P))``. Tolerance: 5 of those.
"""

import math

import numpy as np
import pytest

from optics.rig import holography as h

QE_N = 1e6  # photoelectrons in the field over the whole measurement
REF_E = 100.0  # reference electrons per pixel per frame
READ_E = 2.5


def _random_field(rng, shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _band_limited(rng, n, radius_cyc_per_px, batch=()):
    """A random field (batch..., n, n) whose spectrum lies inside a disc of ``radius`` around DC."""
    f = np.fft.fftfreq(n)
    inside = f[:, None] ** 2 + f[None, :] ** 2 <= radius_cyc_per_px**2
    return np.fft.ifft2(_random_field(rng, batch + (n, n)) * inside)


def _tilted(n, carrier, amplitude=1.0):
    y, x = np.arange(n)[:, None], np.arange(n)[None, :]
    return amplitude * np.exp(2j * np.pi * (carrier[0] * y + carrier[1] * x))


def _noisy(frames, rng):
    """Camera frames in electrons: Poisson shot noise plus Gaussian read noise."""
    return rng.poisson(frames) + READ_E * rng.standard_normal(frames.shape)


@pytest.mark.parametrize("scheme", ["3-step", "4-step"])
def test_phase_shifting_recovers_the_cross_term_exactly(scheme, rng):
    field = _random_field(rng, (3, 16, 20))  # (B, ny, nx)
    reference = 7.0 * np.exp(1j * rng.uniform(0, 2 * np.pi, (16, 20)))
    frames = h.interferograms(field, reference, h.phase_steps(scheme))
    assert frames.shape == (len(h.phase_steps(scheme)), 3, 16, 20) and frames.dtype == np.float64
    cross = h.phase_shifting_cross(frames, h.phase_steps(scheme))
    np.testing.assert_allclose(cross, field * reference.conj(), rtol=0, atol=1e-11 * np.abs(frames).max())


def test_phase_shifting_works_for_any_distinct_steps(rng):
    steps = (0.3, 1.9, 4.0, 5.5, 2.2)
    field, reference = _random_field(rng, (8, 8)), 3.0 - 1.0j
    cross = h.phase_shifting_cross(h.interferograms(field, reference, steps), steps)
    np.testing.assert_allclose(cross, field * np.conj(reference), rtol=0, atol=1e-11 * 100)


def test_off_axis_recovers_a_band_limited_field_exactly_with_batches(rng):
    n, carrier, radius = 64, (8 / 64, -16 / 64), 0.09
    assert radius <= math.hypot(*carrier) / 3
    field = _band_limited(rng, n, 0.8 * radius, batch=(2,))
    r0 = 5.0 * np.exp(0.4j)
    frames = h.interferograms(field, _tilted(n, carrier, r0), h.phase_steps("off-axis"))[0]  # (2, n, n)
    cross = h.off_axis_cross(frames, carrier, radius)
    scale = np.abs(field * r0).max()
    np.testing.assert_allclose(cross, field * np.conj(r0), rtol=0, atol=1e-10 * scale)
    np.testing.assert_array_equal(cross[1], h.off_axis_cross(frames[1], carrier, radius))


def test_off_axis_sign_convention_matters(rng):
    """The sideband of ``R0 exp(+i 2 pi f.r)`` sits at ``-f``: filtering the wrong one fails."""
    n, carrier, radius = 64, (0.0, 0.25), 0.08
    field = _band_limited(rng, n, 0.8 * radius)
    flipped = h.interferograms(field, _tilted(n, (0.0, -0.25), 4.0), (0.0,))[0]
    wrong = h.off_axis_cross(flipped, carrier, radius)
    assert np.abs(wrong - 4.0 * field).max() > 0.5 * np.abs(4.0 * field).max()


def _rms_per_quadrature(estimate, truth):
    err = estimate - truth
    return math.sqrt(np.mean(err.real**2)), math.sqrt(np.mean(err.imag**2))


@pytest.mark.parametrize("scheme", ["3-step", "4-step"])
def test_phase_shifting_noise_matches_the_budget(scheme, rng):
    n, steps = 256, h.phase_steps(scheme)
    u = np.exp(2j * np.pi * rng.random((n, n))) * rng.rayleigh(1.0, (n, n))
    u /= np.sqrt(np.sum(np.abs(u) ** 2))  # unit power: QE_N photoelectrons over the K frames
    per_frame = math.sqrt(QE_N / len(steps))
    frames = _noisy(h.interferograms(u * per_frame, math.sqrt(REF_E), steps), rng)
    u_hat = h.phase_shifting_cross(frames, steps) / (math.sqrt(REF_E) * per_frame)
    signal_e = QE_N / len(steps) / u.size
    expected = np.array(h.quadrature_noise_std(scheme, QE_N, REF_E, READ_E)) * math.sqrt(
        1 + signal_e / (REF_E + READ_E**2)
    )
    tolerance = 5 / math.sqrt(2 * u.size)
    np.testing.assert_allclose(_rms_per_quadrature(u_hat, u), expected, rtol=tolerance)


def test_off_axis_noise_matches_the_budget(rng):
    n, carrier, radius = 512, (0.25, 0.25), 0.1
    disc = h.off_axis_disc((n, n), carrier, radius)
    fraction = disc.mean()
    assert abs(fraction - math.pi * radius**2) < 0.01 * math.pi * radius**2
    u = _band_limited(rng, n, 0.9 * radius)
    u /= np.sqrt(np.sum(np.abs(u) ** 2))  # one frame with the whole budget
    reference = _tilted(n, carrier, math.sqrt(REF_E))
    frames = _noisy(h.interferograms(u * math.sqrt(QE_N), reference, (0.0,))[0], rng)
    u_hat = h.off_axis_cross(frames, carrier, radius) / (math.sqrt(REF_E) * math.sqrt(QE_N))
    signal_e = QE_N / u.size
    budget = h.quadrature_noise_std("off-axis", QE_N, REF_E, READ_E, filter_fraction=fraction)
    expected = np.array(budget) * math.sqrt(1 + signal_e / (REF_E + READ_E**2))
    tolerance = 5 / (2 * math.sqrt(fraction * u.size))
    np.testing.assert_allclose(_rms_per_quadrature(u_hat, u), expected, rtol=tolerance)


def test_budget_equations():
    homodyne = h.quadrature_noise_std("homodyne", QE_N, REF_E, READ_E)
    assert homodyne[0] == 0.5 * math.sqrt(1 + READ_E**2 / REF_E) / math.sqrt(QE_N)
    four = h.quadrature_noise_std("4-step", QE_N, REF_E, READ_E)
    np.testing.assert_allclose(np.array(four) / np.array(homodyne), math.sqrt(2), rtol=1e-12)
    three = h.quadrature_factors("3-step")
    np.testing.assert_allclose(three, (math.sqrt(3 / 8), math.sqrt(9 / 8)), rtol=1e-12)
    np.testing.assert_allclose(h.quadrature_factors("off-axis", filter_fraction=0.5), (0.5, 0.5), rtol=1e-15)
    assert h.quadrature_noise_std("4-step", math.inf, REF_E, READ_E) == (0.0, 0.0)


def test_average_frames_is_the_float64_mean():
    frames = np.arange(24, dtype=np.uint16).reshape(3, 2, 4)
    out = h.average_frames(frames)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, frames.astype(np.float64).mean(axis=0))
    np.testing.assert_array_equal(h.average_frames(frames, axis=1), frames.mean(axis=1))


def test_saturation_check_raises_on_clipped_frames_only(rng):
    full_scale = 4095.0
    frames = rng.uniform(0, 3000, (4, 32, 32))
    h.check_saturation(frames, full_scale, max_fraction=0.0)
    frames[:, :4, :8] = 5000.0  # 32 of 1024 pixels per frame over full scale ...
    clipped = np.minimum(frames, full_scale)  # ... clipped by the camera
    assert h.saturated_fraction(clipped, full_scale) == pytest.approx(32 / 1024)
    with pytest.raises(h.SaturationError, match="full scale 4095.*lower the exposure") as err:
        h.check_saturation(clipped, full_scale, max_fraction=0.01)
    assert "\n" not in str(err.value) and "3.12%" in str(err.value)
    assert isinstance(err.value, ValueError)
    h.check_saturation(clipped, full_scale, max_fraction=0.05)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: h.phase_steps("5-step"), "3-step, 4-step, off-axis"),
        (lambda: h.phase_shifting_cross(np.zeros((2, 4)), (0.0, 1.0)), ">= 3 phase steps"),
        (lambda: h.phase_shifting_cross(np.zeros((3, 4)), (0.0, 2 * np.pi, 4 * np.pi)), "degenerate"),
        (lambda: h.phase_shifting_cross(np.zeros((3, 4)), (0.0, 1.0, 2.0, 3.0)), "one leading entry per phase step"),
        (lambda: h.off_axis_cross(np.zeros((32, 32)), (0.0, 0.25), 0.1), r"radius <= \|carrier\| / 3"),
        (lambda: h.off_axis_cross(np.zeros((32, 32)), (0.0, 0.45), 0.1), "<= 0.5"),
        (lambda: h.off_axis_cross(np.zeros((32, 32)), (0.0, 0.25), 0.0), "0 < radius"),
        (lambda: h.off_axis_cross(np.zeros(32), (0.0, 0.25), 0.05), "at least 2 axes"),
        (lambda: h.quadrature_noise_std("5-step", 1e6, 100.0, 2.5), "holography"),
        (lambda: h.quadrature_noise_std("4-step", 0.0, 100.0, 2.5), "photoelectrons"),
    ],
)
def test_bad_input_raises_one_line(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
