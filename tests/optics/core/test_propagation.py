"""Angular-spectrum propagation: adjoints, symmetry, identity, energy, analytic beams, guardrail."""

import math
import pickle
import warnings

import numpy as np
import pytest

from optics.core.backend import get_backend
from optics.core.propagation import (
    SamplingWarning,
    choose_padded_size,
    make_propagator,
    propagate,
    propagate_transpose,
    transfer_function,
)

REF = dict(n=200, pitch=36e-6, wavelength=532e-9, distance=0.3)


def _cfield(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def bilinear(a, b):
    return np.sum(a * b)


@pytest.mark.parametrize(
    "shift,tilt", [((0, 0), (0, 0)), ((3e-6, -5e-6), (0, 0)), ((0, 0), (2e-4, -1e-4)), ((1e-6, 2e-6), (1e-4, 3e-5))]
)
def test_transpose_dot_product(be128, rng, shift, tilt):
    p = make_propagator(be128, 48, 36e-6, 532e-9, 0.05, shift_m=shift, tilt_rad=tilt)
    x, y = _cfield(rng, (2, 48, 48)), _cfield(rng, (2, 48, 48))
    lhs, rhs = bilinear(propagate(x, p), y), bilinear(x, propagate_transpose(y, p))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_free_space_is_symmetric_not_hermitian(be128, rng):
    p = make_propagator(be128, **REF)
    assert p.symmetric
    x, y = _cfield(rng, (1, 200, 200)), _cfield(rng, (1, 200, 200))
    px, py = propagate(x, p), propagate(y, p)
    assert abs(bilinear(px, y) - bilinear(x, py)) <= 1e-12 * abs(bilinear(px, y))  # P = P^T
    herm = abs(np.vdot(px, y) - np.vdot(x, py)) / abs(np.vdot(px, y))
    assert herm > 0.1  # P != P^H
    np.testing.assert_allclose(propagate_transpose(x, p), px, rtol=0, atol=1e-12 * np.abs(px).max())


def test_registration_shift_breaks_symmetry(be128, rng):
    p = make_propagator(be128, 64, 36e-6, 532e-9, 0.05, shift_m=(0.1 * 36e-6, 0.0))
    assert not p.symmetric
    x = _cfield(rng, (1, 64, 64))
    diff = np.linalg.norm(propagate(x, p) - propagate_transpose(x, p)) / np.linalg.norm(propagate(x, p))
    assert diff > 1e-3


def test_zero_distance_is_identity(be128, rng):
    p = make_propagator(be128, 64, 36e-6, 532e-9, 0.0)
    x = _cfield(rng, (3, 64, 64))
    np.testing.assert_allclose(propagate(x, p), x, atol=1e-12)


def test_energy_conserved_for_propagating_band(be128, rng):
    # periodic grid (n_pad = n) whose every sampled frequency propagates: P is unitary
    p = make_propagator(be128, 64, 36e-6, 532e-9, 0.01, n_pad=64)
    x = _cfield(rng, (2, 64, 64))
    assert abs(np.linalg.norm(propagate(x, p)) / np.linalg.norm(x) - 1) < 1e-12
    # with evanescent waves (pitch < lambda / 2) the output carries exactly the in-band energy
    p = make_propagator(be128, 64, 0.2e-6, 532e-9, 1e-6, n_pad=64)
    h = transfer_function(64, 0.2e-6, 532e-9, 1e-6)
    spectrum = np.fft.fft2(x)
    in_band = np.sum(np.abs(spectrum) ** 2 * (np.abs(h) > 0)) / 64**2
    assert abs(np.linalg.norm(propagate(x, p)) ** 2 / in_band - 1) < 1e-12
    assert in_band < 0.9 * np.linalg.norm(x) ** 2


def test_gaussian_beam_matches_analytic(be128):
    """Gaussian beam, w0 = 60 um at 532 nm after 5 cm (z/zR = 2.4): relative L2 error < 1e-4."""
    n, dx, lam, w0, z = 512, 4e-6, 532e-9, 60e-6, 0.05
    k, zr = 2 * math.pi / lam, math.pi * w0**2 / lam
    c = (np.arange(n) - n // 2) * dx
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    u0 = np.exp(-r2 / w0**2)[None]
    p = make_propagator(be128, n, dx, lam, z, n_pad=n)  # the beam stays well inside the 2 mm window
    w = w0 * math.sqrt(1 + (z / zr) ** 2)
    curv, gouy = z * (1 + (zr / z) ** 2), math.atan(z / zr)
    ref = (w0 / w) * np.exp(-r2 / w**2) * np.exp(1j * (k * z + k * r2 / (2 * curv) - gouy))
    err = np.linalg.norm(propagate(u0, p)[0] - ref) / np.linalg.norm(ref)
    assert err < 1e-4, err


def test_square_aperture_on_axis_matches_fresnel_integrals(be128):
    """Square aperture of side a: on-axis Fresnel intensity ``4 |C(alpha) + i S(alpha)|^4``,
    ``alpha = (a/2) sqrt(2 / (lambda z))`` (Goodman, ch. 4), at Fresnel number 0.83: < 0.2 %."""
    from scipy.special import fresnel

    n, dx, lam, z = 1024, 4e-6, 532e-9, 0.05
    c = (np.arange(n) - n // 2) * dx
    inside = np.abs(c) <= 75 * dx
    a = inside.sum() * dx  # the sampled aperture's width
    u0 = (inside[:, None] & inside[None, :]).astype(float)[None]
    p = make_propagator(be128, n, dx, lam, z, n_pad=2048)
    peak = np.abs(propagate(u0, p)[0, n // 2, n // 2]) ** 2
    s, cc = fresnel(a / 2 * math.sqrt(2 / (lam * z)))
    expected = 4 * abs(cc + 1j * s) ** 4
    assert abs(peak / expected - 1) < 2e-3, (peak, expected)


def test_complex64_stays_complex64_and_accurate(be64, be128, rng):
    x = rng.random((2, 200, 200)).astype(np.float32)
    p64, p128 = make_propagator(be64, **REF), make_propagator(be128, **REF)
    y64 = propagate(x.astype(np.complex64), p64)
    assert y64.dtype == np.complex64 and propagate_transpose(y64, p64).dtype == np.complex64
    y128 = propagate(x.astype(np.complex128), p128)
    assert np.linalg.norm(y64 - y128) / np.linalg.norm(y128) < 1e-5


def test_guardrail_pads_automatically_warns_and_refuses():
    s_half = math.ceil(0.3 * math.tan(math.asin(532e-9 / 72e-6)) / 36e-6 / 2)  # 31 px per side
    assert choose_padded_size(**REF) >= 200 + 2 * s_half - 1
    with pytest.warns(SamplingWarning):
        assert choose_padded_size(**REF, pad=20) == 240
    with pytest.raises(ValueError, match="pad=10 px per side aliases"):
        choose_padded_size(**REF, pad=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        assert choose_padded_size(**REF, pad=10, force=True) == 220
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        choose_padded_size(**REF, pad=40)


def test_propagator_and_backend_pickle(be64, rng):
    p = make_propagator(be64, 32, 36e-6, 532e-9, 0.02)
    x = _cfield(rng, (1, 32, 32)).astype(np.complex64)
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_allclose(propagate(x, q), propagate(x, p), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(wavelength=0.0), "wavelength"),
        (dict(wavelength=-1e-6), "wavelength"),
        (dict(pitch=0.0), "pitch"),
        (dict(distance=-0.1), "distance"),
        (dict(distance=float("nan")), "distance"),
        (dict(n=1), "n must be"),
    ],
)
def test_bad_propagator_input(be64, kwargs, match):
    args = dict(n=32, pitch=36e-6, wavelength=532e-9, distance=0.02) | kwargs
    with pytest.raises(ValueError, match=match):
        make_propagator(be64, **args)


def test_field_shape_and_backend_errors(be64, rng):
    p = make_propagator(be64, 32, 36e-6, 532e-9, 0.02)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 32, 32\)"):
        propagate(np.zeros((1, 16, 16), np.complex64), p)
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("jax")
    with pytest.raises(ValueError, match="precision must be one of"):
        get_backend("numpy", "float16")
