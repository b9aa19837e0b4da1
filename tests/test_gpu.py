"""CuPy backend agrees with NumPy (skipped without CuPy and a CUDA device)."""

import numpy as np
import pytest

from optics.backend import get_backend
from optics.chip import SimulatedChip
from optics.ffm import Objective, forward_only_step, true_gradient
from optics.geometry import Geometry
from optics.imperfections import HardwareSpec
from optics.measurement import MeasurementSpec
from optics.propagation import make_propagator, propagate, propagate_transpose

pytestmark = pytest.mark.gpu


def test_cupy_propagation_matches_numpy_and_is_symmetric(rng):
    cpu, gpu = get_backend("numpy", "complex128"), get_backend("cupy", "complex128")
    x = rng.standard_normal((2, 200, 200)) + 1j * rng.standard_normal((2, 200, 200))
    args = dict(n=200, pitch=36e-6, wavelength=532e-9, distance=0.3)
    pc, pg = make_propagator(cpu, **args), make_propagator(gpu, **args)
    yg = propagate(gpu.asarray(x), pg)
    np.testing.assert_allclose(gpu.to_numpy(yg), propagate(x, pc), atol=1e-12)
    np.testing.assert_allclose(gpu.to_numpy(propagate_transpose(gpu.asarray(x), pg)), gpu.to_numpy(yg), atol=1e-12)


@pytest.mark.parametrize("precision,tol", [("complex64", 1e-4), ("complex128", 1e-10)])
def test_cupy_ffm_gradient_matches_numpy(rng, precision, tol):
    g = Geometry.small()
    phases = rng.uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    x = rng.random((4, g.n, g.n))
    y = np.array([0, 3, 5, 9])
    grads = []
    for name in ("numpy", "cupy"):
        chip = SimulatedChip(g, HardwareSpec().symmetric_only(), MeasurementSpec.off(), seed=3,
                             backend=get_backend(name, precision))
        chip.program(phases)
        res = forward_only_step(chip, x, y, Objective(), 0, range(4))
        assert np.linalg.norm(res.grad_phase - true_gradient(chip, x, y, Objective()).grad_phase) <= \
            tol * np.linalg.norm(res.grad_phase)
        grads.append(res.grad_phase)
    assert np.linalg.norm(grads[0] - grads[1]) <= tol * np.linalg.norm(grads[0])


def test_cupy_noisy_step_runs_and_is_keyed(rng):
    g = Geometry.small()
    chip = SimulatedChip(g, seed=2, backend=get_backend("cupy"))
    x, y = rng.random((4, g.n, g.n)), np.array([1, 2, 3, 4])
    a = forward_only_step(chip, x, y, Objective(), 0, range(4))
    b = forward_only_step(chip, x, y, Objective(), 0, range(4))
    np.testing.assert_array_equal(a.grad_phase, b.grad_phase)
    assert isinstance(a.grad_phase, np.ndarray)
