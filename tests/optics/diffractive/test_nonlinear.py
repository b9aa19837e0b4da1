"""A diffractive network with an activation between its layers: exact gradients, the reload chip's
error pass across the activation, and nothing changed without one."""

import numpy as np
import pytest

from optics.core.activations import Activation
from optics.core.ffm import Objective, forward_only_step, gradient_fidelity, true_gradient
from optics.core.measurement import MeasurementSpec, PassKey
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

G = Geometry.small()
N_SAMPLES = 6
SAMPLES = tuple(range(N_SAMPLES))
KINDS = ("saturable_phase", "kerr")


def _strong(kind):
    """Strong: a pi/2 (saturable) or 1 rad (kerr) shift at 10x a unit-power field's mean intensity."""
    return Activation(kind, 10.0 / G.n**2)


def _batch(rng, b=N_SAMPLES):
    x = np.zeros((b, G.n, G.n))
    o = (G.n - G.object_px) // 2
    x[:, o : o + G.object_px, o : o + G.object_px] = rng.uniform(0, 1, (b, G.object_px, G.object_px))
    x /= np.sqrt((x**2).sum(axis=(1, 2), keepdims=True))
    return x, rng.integers(0, G.n_classes, b)


def _phases(seed=0):
    return np.random.default_rng(seed).uniform(0, 2 * np.pi, G.phase_shape)


@pytest.mark.parametrize("kind", KINDS)
def test_network_gradient_matches_finite_differences(be128, rng, kind):
    """The must-show: the whole 3-layer network with the activation between its layers, complex128,
    ``dL/dphi = -2 Im(sum_b u_l eps_l)`` against central differences of the loss (<= 1e-6)."""
    twin = DigitalTwin(G, be128, activation=_strong(kind))
    phases, (x, labels) = _phases(), _batch(rng)
    objective = Objective(temperature=0.01)

    def loss(p):
        twin.program(p)
        return objective(twin.infer(x), labels, twin.detectors)[0]

    twin.program(phases)
    grad = forward_only_step(twin, x, labels, objective, 0, SAMPLES).grad_phase
    h = 1e-5
    direction = np.random.default_rng(1).standard_normal(G.phase_shape)
    fd = (loss(phases + h * direction) - loss(phases - h * direction)) / (2 * h)
    assert abs(fd - np.sum(grad * direction)) <= 1e-6 * abs(fd)
    for index in np.argsort(np.abs(grad).ravel())[-3:]:  # the largest entries, one per check
        e = np.zeros(grad.size)
        e[index] = h
        fd = (loss(phases + e.reshape(G.phase_shape)) - loss(phases - e.reshape(G.phase_shape))) / (2 * h)
        assert abs(fd - grad.ravel()[index]) <= 1e-6 * abs(fd)


def test_the_activation_changes_the_network(be128, rng):
    x, _ = _batch(rng)
    out = {}
    for kind in ("none", *KINDS):
        twin = DigitalTwin(G, be128, activation=_strong(kind))
        twin.program(_phases())
        out[kind] = twin.infer(x)
        np.testing.assert_allclose(twin.data_pass(x).intensity, out[kind], atol=1e-15)
    for kind in KINDS:
        assert np.linalg.norm(out[kind] - out["none"]) > 0.1 * np.linalg.norm(out["none"])


def _reload_chip(be, activation=None, level=1.0, camera_level=None):
    hardware = HardwareSpec(level=level, slm_bits=0) if level == 0 else HardwareSpec(level=level)
    spec = MeasurementSpec(model="reload", level=level if camera_level is None else camera_level)
    chip = SimulatedChip(G, hardware, spec, 3, be, activation=activation)
    chip.program(_phases())
    return chip


@pytest.mark.parametrize("kind", KINDS)
def test_ideal_reload_chip_measures_the_exact_gradient(be128, rng, kind):
    """No imperfections, noiseless cameras, continuous loader: the rig's forward-only step, with the
    activation's transpose applied digitally between error hops, is the exact gradient."""
    chip = _reload_chip(be128, _strong(kind), level=0.0)
    x, labels = _batch(rng)
    objective = Objective(temperature=0.01)
    ffm = forward_only_step(chip, x, labels, objective, 0, SAMPLES)
    true = true_gradient(chip, x, labels, objective)
    assert gradient_fidelity(ffm.grad_phase, true.grad_phase)["relative_error"] < 1e-9


def _fidelity(chip, rng):
    x, labels = _batch(rng)
    objective = Objective(temperature=0.01)
    ffm = forward_only_step(chip, x, labels, objective, 4, SAMPLES)
    return gradient_fidelity(ffm.grad_phase, true_gradient(chip, x, labels, objective).grad_phase)["cosine"]


@pytest.mark.parametrize("kind", KINDS)
def test_reload_chip_with_activation_keeps_its_fidelity(be64, kind):
    """Level-1 cameras (noise compounding from hop to hop) on ideal optics: the measured gradient
    points along the oracle's, which includes the activation. On level-1 optics the activation
    costs little against the same chip without one (whose unmatched registration already limits it)."""
    noisy = _reload_chip(be64, _strong(kind), level=0.0, camera_level=1.0)
    assert _fidelity(noisy, np.random.default_rng(7)) > 0.95
    with_act = _fidelity(_reload_chip(be64, _strong(kind)), np.random.default_rng(7))
    without = _fidelity(_reload_chip(be64), np.random.default_rng(7))
    assert with_act > without - 0.15, (with_act, without)


def test_no_activation_is_bit_for_bit_the_reload_chip(be64, rng):
    x, labels = _batch(rng)
    plain, none = _reload_chip(be64), _reload_chip(be64, Activation("none"))
    key = PassKey(5, "data", SAMPLES)
    a, b = plain.data_pass(x, key), none.data_pass(x, key)
    np.testing.assert_array_equal(a.fields, b.fields)
    np.testing.assert_array_equal(a.intensity, b.intensity)
    e = a.output.conj()
    ekey = PassKey(5, "error", SAMPLES)
    np.testing.assert_array_equal(plain.error_pass(e, ekey).fields, none.error_pass(e, ekey).fields)
    assert "activation" not in none.describe()


def test_monitors_chip_refuses_an_activation(be64):
    with pytest.raises(ValueError, match="needs measured layers to act between"):
        SimulatedChip(G, HardwareSpec(), MeasurementSpec(), 3, be64, activation=Activation("kerr"))


def test_inference_leaves_the_training_points_alone(be128, rng):
    """A validation pass between a step's data and error passes cannot change the step."""
    chip = _reload_chip(be128, _strong("kerr"), level=0.0)
    x, labels = _batch(rng)
    taps = chip.data_pass(x, PassKey(0, "data", SAMPLES))
    e = taps.output.conj()
    first = chip.error_pass(e, PassKey(0, "error", SAMPLES)).fields
    chip.infer(x[:2], PassKey(0, "inference", SAMPLES[:2]))
    np.testing.assert_array_equal(chip.error_pass(e, PassKey(0, "error", SAMPLES)).fields, first)
