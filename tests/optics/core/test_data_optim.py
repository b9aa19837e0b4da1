"""Digits split, amplitude encoding, optimisers."""

import numpy as np

from optics.core import optim
from optics.core.data import encode_amplitude, load_digits_split


def test_digits_split_is_seeded_stratified_disjoint():
    a, b, c = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    np.testing.assert_array_equal(a.train.ids, b.train.ids)
    assert not np.array_equal(a.train.ids, c.train.ids)
    ids = [set(a.train.ids), set(a.val.ids), set(a.test.ids)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 1797 and a.n_classes == 10
    counts = np.bincount(a.test.labels)
    assert counts.min() >= 34 and counts.max() <= 38


def test_encoding_is_centred_unit_power():
    imgs = load_digits_split(0).train.images[:5]
    x = encode_amplitude(imgs, 64, 32)
    assert x.dtype == np.float32 and x.shape == (5, 64, 64)
    np.testing.assert_allclose((x.astype(np.float64) ** 2).sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.all(x[:, :16] == 0) and np.all(x[:, :, 48:] == 0)


def test_adam_and_sgd_minimise_a_quadratic_without_mutating():
    target = np.linspace(-1, 1, 12).reshape(3, 4)
    for spec in (optim.OptimizerSpec("adam", lr=0.05), optim.OptimizerSpec("sgd", lr=0.1, momentum=0.5)):
        params = {"phase": np.zeros((3, 4))}
        state = optim.init_state(spec, params)
        for _ in range(400):
            before = params["phase"].copy()
            new, state = optim.step(spec, params, {"phase": 2 * (params["phase"] - target)}, state)
            np.testing.assert_array_equal(params["phase"], before)
            params = new
        assert np.abs(params["phase"] - target).max() < 1e-2
        assert int(state["step"]) == 400


def test_amplitudes_are_clipped():
    spec = optim.OptimizerSpec("sgd", lr=10.0)
    p = {"amplitude": np.full(3, 0.5)}
    new, _ = optim.step(spec, p, {"amplitude": np.array([1.0, -1.0, 0.0])}, optim.init_state(spec, p))
    np.testing.assert_allclose(new["amplitude"], [1e-3, 1.0, 0.5])
