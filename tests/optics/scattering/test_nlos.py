"""NLOS imaging through a scattering wall: adjoints, symmetry, SSIM and FFM gradients, baselines."""

import numpy as np
import pytest

from optics.core.backend import get_backend
from optics.core.measurement import MeasurementSpec, PassKey
from optics.core.propagation import propagate, propagate_transpose
from optics.scattering import nlos_baselines as bl
from optics.scattering import nlos_imaging as im
from optics.scattering.medium import MediumSpec, segment_sum, upsample
from optics.scattering.nlos import HiddenScene, NLOSSpec, digit_scenes, random_scenes, square_scenes
from optics.scattering.ssim import psnr_db, ssim, ssim_grad, window

N = 32


@pytest.fixture(scope="module")
def c128():
    return get_backend("numpy", "complex128", fft_threads=1)


@pytest.fixture(scope="module")
def c64():
    return get_backend("numpy", "complex64", fft_threads=1)


def _spec(geometry="reflection", segments=N):
    wall = MediumSpec(n=N, segments=segments, na=0.1, n_screens=2, screen_rms_rad=2.0, screen_corr_px=2.0)
    return NLOSSpec(wall=wall, object_px=4, spacing_px=8, geometry=geometry)


def _scene(be, geometry="reflection", measurement=None, segments=N, seed=1):
    return HiddenScene(_spec(geometry, segments), seed, measurement or MeasurementSpec.off(), be)


def _cfield(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _dot_mismatch(op, op_t, a, b):
    lhs = np.sum(op(a) * b)
    return abs(lhs - np.sum(a * op_t(b))) / abs(lhs)


def _train(scene):
    return square_scenes(scene.spec, [[k] for k in range(9)])


def _operator_pairs(s, objects):
    """Each operator of scene ``s`` used in training, with its transpose."""
    hop, pupil = s._object_hop, s.wall._pupil
    return {
        "object hop P(d_o)": (lambda x: propagate(x, hop), lambda x: propagate_transpose(x, hop)),
        "P O P": (lambda x: s.around_object(x, objects), lambda x: s.around_object(x, objects, True)),
        "pupil K": (lambda x: propagate(x, pupil), lambda x: propagate_transpose(x, pupil)),
        "wall G": (s.wall.medium, lambda x: s.wall.medium(x, transpose=True)),
        "M_b": (lambda x: s.apply(x, objects), lambda x: s.apply(x, objects, transpose=True)),
    }


def test_every_operator_passes_the_dot_product_test(c128, rng):
    """<A a, b> = <a, A^T b> (bilinear, no conjugation) to 1e-12 for each operator used in training."""
    objects = rng.uniform(0, 1, (2, N, N))
    a, b = _cfield(rng, (2, N, N)), _cfield(rng, (2, N, N))
    for geometry in ("reflection", "transmission"):
        pairs = _operator_pairs(_scene(c128, geometry), objects)
        for name, (op, op_t) in pairs.items():
            assert _dot_mismatch(op, op_t, a, b) <= 1e-12, (geometry, name)
    x, y = rng.standard_normal((3, N, N)), rng.standard_normal((3, N, N))  # SSIM window W (real)
    assert abs(np.sum(window(x) * y) - np.sum(x * window(y))) <= 1e-12 * abs(np.sum(window(x) * y))
    u, p = _cfield(rng, (2, 8, 8)), _cfield(rng, (2, N, N))  # U (segments onto pixels) and U^T
    assert abs(np.sum(upsample(u, 4) * p) - np.sum(u * segment_sum(p, 4))) <= 1e-12 * abs(np.sum(u * segment_sum(p, 4)))


def test_reflection_is_symmetric_transmission_is_not(c128, rng):
    objects = rng.uniform(0, 1, (2, N, N))
    a, b = _cfield(rng, (2, N, N)), _cfield(rng, (2, N, N))
    refl, trans = _scene(c128), _scene(c128, "transmission")
    assert _dot_mismatch(lambda x: refl.apply(x, objects), lambda x: refl.apply(x, objects), a, b) <= 1e-12
    assert _dot_mismatch(lambda x: trans.apply(x, objects), lambda x: trans.apply(x, objects), a, b) > 0.1


def _fd(f, x, idx, h):
    up, down = x.copy(), x.copy()
    up[idx] += h
    down[idx] -= h
    return (f(up) - f(down)) / (2 * h)


def test_ssim_gradient_equals_finite_differences(rng):
    """float64: the analytic dSSIM/dx against central differences at random pixels (<= 1e-6)."""
    x, y = rng.uniform(0, 1, (2, 16, 16)), rng.uniform(0, 1, (2, 16, 16))
    y[1, 4:10, 4:10] = 0.0
    _, g = ssim_grad(x, y)
    idx = [(0, 0, 0), (0, 5, 7), (1, 4, 4), (1, 15, 9), (1, 8, 8), (0, 11, 2)]
    want = np.array([_fd(lambda z: ssim(z, y).sum(), x, i, 1e-6) for i in idx])
    got = np.array([g[i] for i in idx])
    assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)
    assert np.allclose(ssim(y, y), 1.0) and np.all(ssim(x, y) < 1)
    assert psnr_db(np.full((4, 4), 0.1), np.zeros((4, 4))) == pytest.approx(20.0)


def test_imaging_loss_gradient_through_auto_exposure(rng):
    """dL/dI of 1 - SSIM(I / max I, T) against central differences (float64, <= 1e-6)."""
    i = rng.uniform(0.1, 1, (2, 16, 16))
    t = (rng.uniform(0, 1, (2, 16, 16)) > 0.7).astype(float)
    _, d, _ = im.imaging_loss(i, t)
    peak = np.unravel_index(i[0].argmax(), i[0].shape)
    idx = [(0, 3, 3), (1, 7, 12), (0, *peak), (1, 0, 15)]
    want = np.array([_fd(lambda z: im.imaging_loss(z, t)[0], i, k, 1e-7) for k in idx])
    assert np.linalg.norm(np.array([d[k] for k in idx]) - want) <= 1e-6 * np.linalg.norm(want)


def test_ffm_gradient_equals_transpose_and_finite_differences(c128):
    """Reflection, noise off, complex128: FFM == exact M^T (1e-10) == central differences (1e-6)."""
    s = _scene(c128, segments=8)
    objects = square_scenes(s.spec, [[0], [4, 8]])
    phases = np.random.default_rng(3).uniform(0, 2 * np.pi, (8, 8))
    _, g_ffm, _ = im.ffm_gradient(s, phases, objects, objects**2)
    _, g_exact, _ = im.ffm_gradient(s, phases, objects, objects**2, exact=True)
    assert np.linalg.norm(g_ffm - g_exact) <= 1e-10 * np.linalg.norm(g_exact)
    loss = lambda p: im.imaging_loss(s.true_data_pass(p, objects).intensity, objects**2)[0]  # noqa: E731
    idx = [(0, 0), (3, 5), (7, 7), (2, 6), (5, 1)]
    want = np.array([_fd(loss, phases, k, 1e-6) for k in idx])
    assert np.linalg.norm(np.array([g_ffm[k] for k in idx]) - want) <= 1e-6 * np.linalg.norm(want)


def test_gradient_fidelity_symmetric_and_control(c64):
    """Measured with camera noise (1e9 photons): >= 0.95 in reflection; the transmission control fails."""
    cam = MeasurementSpec(level=1.0, photons_per_sample=1e9)
    refl, trans = _scene(c64, measurement=cam), _scene(c64, "transmission", cam)
    phi0 = im.initial_mask(N, 1)
    f = im.fidelity(refl, phi0, _train(refl), _train(refl) ** 2)
    assert f["symmetry_cosine"] > 1 - 1e-6 and f["cosine"] >= 0.95, f
    c = im.fidelity(trans, phi0, _train(trans), _train(trans) ** 2)
    assert abs(c["symmetry_cosine"]) < 0.5 and abs(c["cosine"]) < 0.5, c


def test_complex64_by_default_complex128_on_request_and_noise_keyed(c64, c128):
    cam = MeasurementSpec(level=1.0)
    s64, s128 = _scene(c64, measurement=cam), _scene(c128, measurement=cam)
    objects, phi = _train(s64)[:3], im.initial_mask(N, 2)
    taps = s64.data_pass(phi, objects, PassKey(0, "data", (0, 1, 2)))
    assert {taps.fields.dtype, taps.output.dtype} == {np.dtype(np.complex64)}
    assert s128.true_data_pass(phi, objects).output.dtype == np.complex128
    a = s64.frames(phi, objects, PassKey(3, "inference", (0, 1, 2)))
    b = s64.frames(phi, objects[1:2], PassKey(3, "inference", (1,)))  # keyed per sample: batch-independent
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a, s64.frames(phi, objects, PassKey(4, "inference", (0, 1, 2))))


def test_scenes_follow_the_paper_protocol():
    spec = _spec()
    single = square_scenes(spec, [[k] for k in range(9)])
    assert single.shape == (9, N, N) and np.all(single.sum(axis=(1, 2)) == 16)
    assert not np.any(single.sum(axis=0) > 1)  # nine disjoint positions
    five = random_scenes(4, 5, seed=1)
    assert all(len(set(s)) == 5 for s in five) and five == random_scenes(4, 5, seed=1)
    digits = digit_scenes(spec, np.ones((2, 8, 8)))
    assert digits.sum() == 2 * 16
    with pytest.raises(ValueError, match="does not fit"):
        NLOSSpec(wall=MediumSpec(n=N, segments=N), spacing_px=20)


def test_zernike_modes_are_orthonormal_on_the_disc():
    assert [bl.noll_to_nm(j) for j in range(1, 7)] == [(0, 0), (1, 1), (1, -1), (2, 0), (2, -2), (2, 2)]
    z = bl.zernike_basis(28, 64)
    disc = z[2] != 0  # defocus is nonzero almost everywhere on the disc
    gram = np.einsum("ipq,jpq->ij", z, z) / disc.sum()
    assert np.allclose(gram, np.eye(28), atol=0.05)


def test_ffm_training_beats_annealing_at_equal_frames_and_ridge_runs(c64):
    """A reduced protocol (32 x 32, 40 steps): FFM improves unseen 5-object scenes more than annealing."""
    s = _scene(c64, measurement=MeasurementSpec(level=1.0, photons_per_sample=1e9))
    train, phi0 = _train(s), im.initial_mask(N, 1)
    tests = {"five": (square_scenes(s.spec, random_scenes(4, 5, 1)), 1000)}
    h = im.train_ffm(s, train, 40, 0.1, phi0, tests, record_every=20)
    assert list(h["record_steps"]) == [0, 20, 40] and h["frames"][-1] == 40 * 18
    sa = bl.anneal(s, train, int(h["frames"][-1]), phi0, seed=1)
    assert sa["frames"][-1] <= h["frames"][-1] and sa["loss"][-1] <= sa["loss"][0]
    start, ffm, ann = (im.evaluate(s, p, tests, step=0)["five"]["ssim"] for p in (phi0, h["phases"], sa["phases"]))
    assert ffm > start + 0.1 and ffm > ann
    ridge = bl.ridge_reconstruction(s, phi0, train, tests, repeats=2)
    assert ridge["frames"] == 18 and 0 < ridge["metrics"]["five"]["ssim"] <= 1


def test_frame_rates_are_defined():
    r = bl.frame_rates(1000.0, predict_s=1e-3)
    assert r["optical_hz"] == 1000.0 and r["digital_hz"] == pytest.approx(500.0)
    with pytest.raises(ValueError, match="camera_fps"):
        bl.frame_rates(0.0)


def test_hidden_digits_are_classified_from_the_frames(c64):
    """Logistic regression on the camera frames through the wall, against the unscattered maps."""
    from optics.core.data import load_digits_split

    s = _scene(c64, measurement=MeasurementSpec(level=1.0, photons_per_sample=1e9))
    split = load_digits_split(0)
    tr = (digit_scenes(s.spec, split.train.images[:300]), split.train.labels[:300])
    te = (digit_scenes(s.spec, split.test.images[:150]), split.test.labels[:150])
    acc = bl.classify_digits(s, {"initial": im.initial_mask(N, 1)}, tr, te)
    assert set(acc) == {"ground_truth", "initial"} and acc["initial"] > 0.5 and acc["ground_truth"] > 0.5
