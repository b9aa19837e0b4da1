"""Activations between measured layers: values, Wirtinger derivatives and the transpose."""

import numpy as np
import pytest

from optics.core.activations import Activation, ActivationTrace

KINDS = ("saturable_phase", "kerr")


def _field(rng, shape=(3, 8, 8), scale=1.0):
    return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def test_the_papers_activations_at_unit_scale(rng):
    y = _field(rng)
    np.testing.assert_allclose(Activation("saturable_phase")(y), y * np.exp(1j * np.pi / (1 + 1 / np.abs(y) ** 2)))
    np.testing.assert_allclose(Activation("kerr")(y), y * np.exp(1j * np.abs(y) ** 2))
    scaled = Activation("kerr", intensity_scale=4.0)(2.0 * y)
    np.testing.assert_allclose(scaled, 2.0 * Activation("kerr")(y))


@pytest.mark.parametrize("kind", KINDS)
def test_phase_only_keeps_dtype_and_modulus(rng, kind):
    y = _field(rng).astype(np.complex64)
    out = Activation(kind, 0.5)(y)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(np.abs(out), np.abs(y), rtol=1e-6)
    z = np.zeros((2, 2), complex)
    assert np.all(np.isfinite(Activation(kind).transpose(z, z + 1)))


def test_none_is_the_identity(rng):
    y, e = _field(rng), _field(rng)
    a = Activation()
    assert not a.active and a(y) is y and a.transpose(y, e) is e and a.linearised(y, e) is e


@pytest.mark.parametrize("kind", KINDS)
def test_wirtinger_derivatives_against_finite_differences(rng, kind):
    """``f(y + h dy) - f(y - h dy) = 2 h ((df/dy) dy + (df/dconj y) conj(dy)) + O(h^3)``."""
    act = Activation(kind, 0.7)
    y, dy = _field(rng), _field(rng)
    h = 1e-6
    fd = (act(y + h * dy) - act(y - h * dy)) / (2 * h)
    lin = act.linearised(y, dy)
    assert np.linalg.norm(fd - lin) / np.linalg.norm(lin) < 1e-8


@pytest.mark.parametrize("kind", KINDS)
def test_transpose_is_the_adjoint_under_the_real_pairing(rng, kind):
    """Dot-product test: ``Re(sum eps J(dy)) = Re(sum J^T(eps) dy)`` (no conjugation)."""
    act = Activation(kind, 0.7)
    y, dy, eps = _field(rng), _field(rng), _field(rng)
    lhs = np.real(np.sum(eps * act.linearised(y, dy)))
    rhs = np.real(np.sum(act.transpose(y, eps) * dy))
    assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + abs(rhs))


@pytest.mark.parametrize("kind", KINDS)
def test_transpose_carries_a_real_loss_gradient(rng, kind):
    """For ``L = sum |f(y) - c|^2`` the error at ``y`` is ``J^T(dL/df)``, ``dL/df = conj(f - c)``,
    and ``dL = 2 Re(sum eps_y dy)`` (the project's convention)."""
    act = Activation(kind, 0.7)
    y, dy, c = _field(rng), _field(rng), _field(rng)

    def loss(z):
        return float(np.sum(np.abs(act(z) - c) ** 2))

    eps_y = act.transpose(y, np.conj(act(y) - c))
    h = 1e-6
    fd = (loss(y + h * dy) - loss(y - h * dy)) / (2 * h)
    assert abs(fd - 2 * np.real(np.sum(eps_y * dy))) <= 1e-7 * abs(fd)


def test_bad_values_are_one_line():
    with pytest.raises(ValueError, match="activation must be one of"):
        Activation("relu")
    with pytest.raises(ValueError, match="intensity scale"):
        Activation("kerr", 0.0)


def test_trace_refuses_an_error_without_its_data_pass(rng):
    trace = ActivationTrace(Activation("kerr"))
    with pytest.raises(ValueError, match="data pass of the same batch"):
        trace.backward(1, _field(rng))
    trace.forward(1, _field(rng))
    with pytest.raises(ValueError, match="data pass of the same batch"):
        trace.backward(1, _field(rng, (2, 8, 8)))
