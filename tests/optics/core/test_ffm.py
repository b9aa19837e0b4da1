"""FFM gradients: finite differences, exact transpose, symmetric imperfections, fidelity."""

import numpy as np
import pytest

from optics.core.data import encode_amplitude, load_digits_split
from optics.core.ffm import Objective, forward_only_step, gradient_fidelity, measure_fidelity, true_gradient
from optics.core.measurement import MeasurementSpec
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

TINY = Geometry.small(n=24, detector_px=3, object_px=12, n_layers=3, distance=0.01, n_classes=4)
SMALL = Geometry.small(n=48, detector_px=4, object_px=24, distance=0.03)
OBJ = Objective(temperature=0.02)


def _batch(rng, g, b=3):
    x = rng.random((b, g.n, g.n)) * (rng.random((1, g.n, g.n)) > 0.3)
    return x / np.sqrt((x**2).sum(axis=(1, 2), keepdims=True)), rng.integers(0, g.n_classes, b)


def _params(rng, g):
    shape = (g.n_layers, g.n, g.n)
    return rng.uniform(0, 2 * np.pi, shape), rng.uniform(0.4, 1.0, shape)


def _loss(chip, phases, amps, x, y):
    chip.program(phases, amps)
    return OBJ(chip.data_pass(x).intensity, y, chip.detectors)[0]


def test_ffm_gradient_matches_finite_differences(be128, rng):
    """Phases and amplitudes, every parameter, central differences in complex128: <= 1e-6."""
    twin = DigitalTwin(TINY, be128)
    phases, amps = _params(rng, TINY)
    x, y = _batch(rng, TINY)
    twin.program(phases, amps)
    res = forward_only_step(twin, x, y, OBJ, 0, range(3))
    h = 1e-6
    for name, g_ffm in (("phase", res.grad_phase), ("amplitude", res.grad_amplitude)):
        fd = np.zeros_like(g_ffm)
        for idx in np.ndindex(g_ffm.shape):
            p, a = phases.copy(), amps.copy()
            target = p if name == "phase" else a
            target[idx] += h
            lp = _loss(twin, p, a, x, y)
            target[idx] -= 2 * h
            lm = _loss(twin, p, a, x, y)
            fd[idx] = (lp - lm) / (2 * h)
        rel = np.linalg.norm(g_ffm - fd) / np.linalg.norm(fd)
        assert rel <= 1e-6, (name, rel)


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0, 2.0])
def test_forward_only_equals_exact_transpose_on_symmetric_chip(be128, rng, level):
    """Symmetric imperfections, noise off: FFM == the chip's true gradient to 1e-10."""
    hw = HardwareSpec(level=level, mask_decentre_px=0.7).symmetric_only()
    chip = SimulatedChip(SMALL, hw, MeasurementSpec.off(), seed=7, backend=be128)
    phases, amps = _params(rng, SMALL)
    chip.program(phases, amps)
    x, y = _batch(rng, SMALL, 4)
    assert chip.describe()["symmetric"]
    ffm, exact = forward_only_step(chip, x, y, OBJ, 0, range(4)), true_gradient(chip, x, y, OBJ)
    for a, b in ((ffm.grad_phase, exact.grad_phase), (ffm.grad_amplitude, exact.grad_amplitude)):
        assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b)


def test_complex64_gradient_matches_complex128(be64, be128, rng):
    phases, amps = _params(rng, SMALL)
    x, y = _batch(rng, SMALL, 4)
    grads = []
    for be in (be64, be128):
        chip = SimulatedChip(SMALL, HardwareSpec().symmetric_only(), MeasurementSpec.off(), seed=3, backend=be)
        chip.program(phases, amps)
        grads.append(forward_only_step(chip, x, y, OBJ, 0, range(4)))
    for name in ("grad_phase", "grad_amplitude"):
        g64, g128 = getattr(grads[0], name), getattr(grads[1], name)
        assert np.linalg.norm(g64 - g128) <= 1e-4 * np.linalg.norm(g128)


def test_twin_gradient_is_true_only_at_level_zero(be128, capsys):
    """In-silico (twin) gradient against the chip's true gradient, trained-like phases."""
    g = Geometry.small()
    split = load_digits_split(0)
    x = encode_amplitude(split.train.images[:16], g.n, g.object_px, np.float64)
    y = split.train.labels[:16]
    phases = np.random.default_rng(5).uniform(2.5, 3.8, (g.n_layers, g.n, g.n))
    twin = DigitalTwin(g, be128)
    twin.program(phases)
    g_twin = forward_only_step(twin, x, y, OBJ, 0, range(16)).grad_phase
    cosines = {}
    for level in (0.0, 0.5, 1.0, 2.0):
        chip = SimulatedChip(g, HardwareSpec(level=level).symmetric_only(), MeasurementSpec.off(), 11, be128)
        chip.program(phases)
        truth = true_gradient(chip, x, y, OBJ).grad_phase
        ffm = forward_only_step(chip, x, y, OBJ, 0, range(16)).grad_phase
        assert gradient_fidelity(ffm, truth)["relative_error"] <= 1e-10
        cosines[level] = gradient_fidelity(g_twin, truth)["cosine"]
    with capsys.disabled():
        print(f"\n  twin-vs-chip gradient cosine by level: {cosines}")
    assert cosines[0.0] > 1 - 1e-12
    assert cosines[0.5] < 0.999 and cosines[1.0] < cosines[0.5] and cosines[2.0] < cosines[1.0]


def test_registration_shift_loses_fidelity(be128, rng):
    """0.1 px registration shift per plane (no other imperfection): cosine < 0.9."""
    g = Geometry.small()
    off = {k: 0.0 for k in HardwareSpec.__dataclass_fields__ if k not in ("level", "slm_bits")}
    hw = HardwareSpec(**(off | {"registration_shift_px": 0.1, "slm_bits": 0}))
    chip = SimulatedChip(g, hw, MeasurementSpec.off(), seed=2, backend=be128)
    assert not chip.describe()["symmetric"]
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    chip.program(phases)
    x, y = _batch(rng, g, 8)
    fid = measure_fidelity(chip, x, y, OBJ, 0, range(8))
    assert fid["cosine"] < 0.9, fid
    calibrated = SimulatedChip(g, hw.symmetric_only(), MeasurementSpec.off(), seed=2, backend=be128)
    calibrated.program(phases)
    assert measure_fidelity(calibrated, x, y, OBJ, 0, range(8))["cosine"] > 1 - 1e-12


def test_noise_is_keyed_not_clocked(be64, rng):
    g = Geometry.small()
    chip = SimulatedChip(g, HardwareSpec(), MeasurementSpec(), seed=4, backend=be64)
    x, y = _batch(rng, g, 4)
    a = forward_only_step(chip, x, y, OBJ, 3, [10, 11, 12, 13])
    b = forward_only_step(chip, x, y, OBJ, 3, [10, 11, 12, 13])
    c = forward_only_step(chip, x, y, OBJ, 4, [10, 11, 12, 13])
    np.testing.assert_array_equal(a.grad_phase, b.grad_phase)
    assert not np.array_equal(a.grad_phase, c.grad_phase)
    # a sample's noise does not depend on which batch it is in
    d = forward_only_step(chip, x[:2], y[:2], OBJ, 3, [10, 11])
    np.testing.assert_allclose(d.scores, a.scores[:2], rtol=1e-6)


def test_noisy_fidelity_is_high_at_level_one(be64, rng):
    g = Geometry.small()
    chip = SimulatedChip(g, HardwareSpec(), MeasurementSpec(), seed=4, backend=be64)
    chip.program(np.full((g.n_layers, g.n, g.n), np.pi))
    x, y = _batch(rng, g, 16)
    assert measure_fidelity(chip, x, y, OBJ, 0, range(16))["cosine"] > 0.95


def test_chips_differ_by_seed_and_hide_their_state(be64):
    g = Geometry.small()
    a, b = SimulatedChip(g, seed=1, backend=be64), SimulatedChip(g, seed=2, backend=be64)
    assert not np.allclose(a.reveal().phase_screens, b.reveal().phase_screens)
    np.testing.assert_array_equal(a.reveal().distances, SimulatedChip(g, seed=1, backend=be64).reveal().distances)
    assert "phase_screens" not in a.describe()
