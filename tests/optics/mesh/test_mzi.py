"""MZI mesh chips: operators and transposes, the double pass's symmetry, FFM gradients, data, learning."""

import numpy as np
import pytest

from optics.core.data import encode_modes, load_digits_split, load_iris_split, reduce_features
from optics.core.detectors import detector_scores, scores_transpose
from optics.core.ffm import Objective, forward_only_step, gradient_fidelity, true_gradient
from optics.core.measurement import MeasurementSpec, PassKey
from optics.mesh.layout import MeshErrors, MeshLayout, coupler_column, mzi
from optics.mesh.mzi import MeshTwin, SimulatedMesh

OBJ = Objective(temperature=0.1)
OFF = MeasurementSpec.off()


def _unit(rng, b, n, complex_=False):
    x = rng.standard_normal((b, n)) + (1j * rng.standard_normal((b, n)) if complex_ else 0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _sim(be, n=5, arrangement="double", level=1.0, seed=3, errors=None, measurement=OFF):
    return SimulatedMesh(
        n, 3, level=level, seed=seed, arrangement=arrangement, errors=errors, measurement=measurement, backend=be
    )


def _programmed(chip, rng):
    chip.program(rng.uniform(0.2, 2 * np.pi - 0.2, chip.shifter_mask.shape))
    return chip


def test_mzi_is_unitary_with_any_couplers_and_bar_at_theta_pi(rng):
    for _ in range(5):
        theta, phi, ka, kb = rng.uniform(0, 2 * np.pi, 2).tolist() + (np.pi / 4 + 0.2 * rng.standard_normal(2)).tolist()
        u = mzi(theta, phi, ka, kb)
        np.testing.assert_allclose(u.conj().T @ u, np.eye(2), atol=1e-14)
    np.testing.assert_allclose(mzi(np.pi, np.pi), np.eye(2), atol=1e-15)
    np.testing.assert_allclose(np.abs(mzi(0.0, 0.0)), [[0, 1], [1, 0]], atol=1e-15)  # full cross


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_identity_setting_and_ideal_single_pass_is_unitary(be128, rng, n):
    layout = MeshLayout(n)
    assert layout.shifter_mask().sum() == n * n and len(layout.propagations(layout.ideal_kappas())) == 2 * n + 2
    for arrangement in ("single", "double"):
        twin = MeshTwin(n, 1, arrangement, be128)
        phases = np.zeros(layout.shifter_mask().shape)
        phases[:-1] = np.pi  # every MZI in the bar state, no screen
        twin.program(phases)
        np.testing.assert_allclose(twin.transfer_matrix(), np.eye(n), atol=1e-14)
        a = _programmed(twin, rng).transfer_matrix()
        np.testing.assert_allclose(a.conj().T @ a, np.eye(n), atol=1e-13)


def test_operator_transposes_dot_product(be128, rng):
    """<P x, e> = <x, P^T e> for coupler columns; <M x, e> = <x, M^T e> for both arrangements
    (the exact error pass), with errors; <s(I), d> = <I, s^T(d)> for mode detectors."""
    kappas = np.pi / 4 + 0.1 * rng.standard_normal(6)
    x, e = _unit(rng, 1, 6, True)[0], _unit(rng, 1, 6, True)[0]
    for start in (0, 1):
        p = coupler_column(6, start, kappas)
        assert abs((p @ x) @ e - x @ (p.T @ e)) <= 1e-14
    for arrangement in ("single", "double"):
        chip = _programmed(_sim(be128, 6, arrangement, level=2.0), rng)
        x, e = _unit(rng, 3, 6, True), _unit(rng, 3, 6, True)
        y = chip.true_data_pass(x).output
        mt_e = chip.true_error_pass(e, to_input=True).output
        lhs = np.sum(y * e)
        assert abs(lhs - np.sum(x * mt_e)) <= 1e-12 * abs(lhs)
    det = chip.detectors
    intensity, ds = rng.random((4, 6)), rng.standard_normal((4, 3))
    assert det.plane == (6,) and scores_transpose(ds, det).shape == (4, 6)
    lhs = np.sum(detector_scores(intensity, det) * ds)
    assert abs(lhs - np.sum(intensity * scores_transpose(ds, det))) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("level", [1.0, 3.0])
def test_double_pass_is_symmetric_with_errors_single_pass_is_not(be128, rng, level):
    chip = _programmed(_sim(be128, 6, "double", level=level), rng)
    m, a = chip.transfer_matrix(), chip.mesh_matrix()
    assert np.linalg.norm(m - m.T) <= 1e-12 * np.linalg.norm(m)
    assert np.linalg.norm(a - a.T) > 0.3 * np.linalg.norm(a)
    mirror = np.diag(np.exp(1j * chip.reveal().mirror_phases))
    np.testing.assert_allclose(m, a.T @ mirror @ a, atol=1e-13)
    assert not np.allclose(m.conj().T @ m, np.eye(6), atol=1e-3)  # lossy: not unitary, still symmetric


@pytest.mark.parametrize("n", [4, 5])
def test_double_pass_has_n_n_plus_1_over_2_degrees_of_freedom(be128, rng, n):
    """Rank of d vec(M) / d phi over the N^2 shifters: N^2 for the single pass, N(N+1)/2 doubled."""
    ranks = {}
    for arrangement in ("single", "double"):
        twin = MeshTwin(n, 1, arrangement, be128)
        phases, mask, h = rng.uniform(0, 2 * np.pi, (2 * n + 1, n)), twin.shifter_mask, 1e-6
        cols = []
        for idx in zip(*np.nonzero(mask)):
            p = phases.copy()
            p[idx] += h
            twin.program(p)
            plus = twin.transfer_matrix()
            p[idx] -= 2 * h
            twin.program(p)
            d = (plus - twin.transfer_matrix()) / (2 * h)
            cols.append(np.concatenate([d.real.ravel(), d.imag.ravel()]))
        s = np.linalg.svd(np.array(cols), compute_uv=False)
        ranks[arrangement] = int((s > 1e-6 * s[0]).sum())
    assert ranks == {"single": n * n, "double": n * (n + 1) // 2}


def test_ffm_gradient_matches_finite_differences_on_imperfect_chip(be128, rng):
    """Coupler, static phase, mirror and loss errors (level 1), noise off: FFM == central differences."""
    chip = _programmed(_sim(be128, 5, errors=MeshErrors(crosstalk=0.0)), rng)
    phases = rng.uniform(0.2, 2 * np.pi - 0.2, (11, 5))
    chip.program(phases)
    x, y = _unit(rng, 4, 5), np.array([0, 1, 2, 1])
    g = forward_only_step(chip, x, y, OBJ, 0, range(4)).grad_phase * chip.shifter_mask
    fd, h = np.zeros_like(g), 1e-6
    for idx in zip(*np.nonzero(chip.shifter_mask)):
        for sign in (1, -1):
            p = phases.copy()
            p[idx] += sign * h
            chip.program(p)
            fd[idx] += sign * OBJ(chip.true_data_pass(x).intensity, y, chip.detectors)[0] / (2 * h)
    assert np.linalg.norm(g - fd) <= 1e-6 * np.linalg.norm(fd)


def test_forward_only_is_exact_on_double_pass_and_wrong_on_single_pass(be128, rng, capsys):
    """With crosstalk too (gradient w.r.t. realised phases): double pass == the true gradient;
    a single pass with the error sent forward is the negative control."""
    x, y = _unit(rng, 8, 5), rng.integers(0, 3, 8)
    cosines = {}
    for arrangement in ("double", "single"):
        chip = _programmed(_sim(be128, 5, arrangement, level=2.0), rng)
        ffm = forward_only_step(chip, x, y, OBJ, 0, range(8)).grad_phase * chip.shifter_mask
        truth = true_gradient(chip, x, y, OBJ).grad_phase * chip.shifter_mask
        cosines[arrangement] = gradient_fidelity(ffm, truth)["cosine"]
        if arrangement == "double":
            assert gradient_fidelity(ffm, truth)["relative_error"] <= 1e-10
    with capsys.disabled():
        print(f"\n  forward-only gradient cosine against the true one: {cosines}")
    assert cosines["single"] < 0.5


def test_complex64_stays_complex64_and_matches_complex128(be64, be128, rng):
    x, y = _unit(rng, 4, 5), np.array([0, 1, 2, 0])
    phases = rng.uniform(0, 2 * np.pi, (11, 5))
    grads = []
    for be in (be64, be128):
        chip = _sim(be, 5, measurement=MeasurementSpec())
        chip.program(phases)
        taps = chip.data_pass(x.astype(np.float32), PassKey(0, "data", tuple(range(4))))
        etaps = chip.error_pass(taps.output, PassKey(0, "error", tuple(range(4))), to_input=True)
        if be is be64:
            assert taps.fields.dtype == np.complex64 and taps.output.dtype == np.complex64
            assert taps.intensity.dtype == np.float32 and etaps.fields.dtype == np.complex64
            assert etaps.output.dtype == np.complex64 and taps.fields.shape == (11, 8, 5)
        chip.measurement = OFF
        grads.append(forward_only_step(chip, x, y, OBJ, 0, range(4)).grad_phase)
    assert np.linalg.norm(grads[0] - grads[1]) <= 1e-4 * np.linalg.norm(grads[1])


def test_noise_is_keyed_and_hidden_errors_are_private(be64, rng):
    chip = _programmed(_sim(be64, 5, measurement=MeasurementSpec()), rng)
    x, y = _unit(rng, 4, 5), np.array([0, 1, 2, 0])
    a = forward_only_step(chip, x, y, OBJ, 3, [10, 11, 12, 13])
    b = forward_only_step(chip, x, y, OBJ, 3, [10, 11, 12, 13])
    c = forward_only_step(chip, x, y, OBJ, 4, [10, 11, 12, 13])
    np.testing.assert_array_equal(a.grad_phase, b.grad_phase)
    assert not np.array_equal(a.grad_phase, c.grad_phase)
    assert not np.allclose(chip.reveal().kappas, _sim(be64, 5, seed=4).reveal().kappas)
    np.testing.assert_array_equal(chip.reveal().phase_offsets, _sim(be64, 5).reveal().phase_offsets)
    assert "kappas" not in chip.describe() and chip.describe()["symmetric"]
    np.testing.assert_array_equal(_sim(be64, 5, level=0.0).reveal().phase_offsets, 0.0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda be: MeshTwin(1, 1, backend=be), "n_modes"),
        (lambda be: MeshTwin(2.5, 1, backend=be), "n_modes"),
        (lambda be: MeshTwin("four", 1, backend=be), "n_modes"),
        (lambda be: MeshTwin(4, 5, backend=be), "n_classes"),
        (lambda be: MeshTwin(4, 2, "triple", be), "arrangement"),
        (lambda be: MeshTwin(4, 2, backend=be, detector_modes=(1, 1)), "detector_modes"),
        (lambda be: MeshTwin(4, 2, backend=be, detector_modes=(0, 4)), "detector_modes"),
        (lambda be: SimulatedMesh(4, 2, level=-1, backend=be), "level"),
        (lambda be: MeshErrors(coupler_angle_rad=-0.1), "coupler_angle_rad"),
        (lambda be: MeshTwin(4, 2, backend=be).program(np.zeros((8, 4))), "phases"),
        (lambda be: MeshTwin(4, 2, backend=be).program(np.full((9, 4), np.nan)), "phases"),
        (lambda be: MeshTwin(4, 2, backend=be).data_pass(np.ones((3, 5))), "inputs"),
        (lambda be: MeshTwin(4, 2, backend=be).data_pass(np.ones(4)), "inputs"),
        (lambda be: MeshTwin(4, 2, backend=be).error_pass(np.ones((2, 3))), "error"),
        (lambda be: encode_modes(np.ones((2, 4)), 4), "n_modes"),
        (lambda be: encode_modes(np.ones(4), 5), "features"),
        (lambda be: reduce_features(load_iris_split(0), 3, "standardise"), "n_features"),
        (lambda be: reduce_features(load_digits_split(0), 10, "block"), "block"),
    ],
)
def test_bad_input_gives_one_line_error(be64, make, match):
    with pytest.raises(ValueError, match=match) as err:
        make(be64)
    assert "\n" not in str(err.value)


def test_iris_split_and_mode_encoding():
    a, b = load_iris_split(0), load_iris_split(1)
    assert a.train.images.shape == (90, 4) and len(a.val) == 30 and len(a.test) == 30 and a.n_classes == 3
    assert not np.array_equal(a.train.ids, b.train.ids)
    assert np.bincount(a.test.labels).tolist() == [10, 10, 10]
    assert not set(a.train.ids) & set(a.test.ids) and not set(a.train.ids) & set(a.val.ids)
    red = reduce_features(a, 4, "standardise")  # statistics from the training part only
    np.testing.assert_allclose(red.train.images.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(red.train.images.std(axis=0), 1, atol=1e-12)
    assert np.abs(red.test.images.mean(axis=0)).max() > 1e-3
    pca = reduce_features(load_digits_split(0), 7, "pca")
    assert pca.test.images.shape[1] == 7
    np.testing.assert_allclose(np.cov(pca.train.images.T, bias=True), np.eye(7), atol=1e-10)
    assert reduce_features(load_digits_split(0), 16, "block").train.images.shape[1] == 16
    x = encode_modes(red.test.images, 6)
    np.testing.assert_allclose((x**2).sum(axis=1), 1.0, atol=1e-12)
    assert np.all(x[:, 5] == 0) and np.all(x[:, 4] > 0)
    np.testing.assert_allclose(x[:, :4] / x[:, 4:5], red.test.images, atol=1e-12)  # bias 1, then scaled
