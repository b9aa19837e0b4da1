"""CuPy backend agrees with NumPy (skipped without CuPy and a CUDA device)."""

import importlib.util

import numpy as np
import pytest

from optics.core.backend import get_backend
from optics.core.ffm import Objective, forward_only_step, true_gradient
from optics.core.measurement import MeasurementSpec, PassKey, keyed_normals, measure_field_, reference_rotation
from optics.core.propagation import make_propagator, propagate, propagate_transpose
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

pytestmark = pytest.mark.gpu
# a simulated chip draws its imperfections with SciPy, which a bare GPU host may lack
needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="SciPy not installed")


def test_cupy_propagation_matches_numpy_and_is_symmetric(rng):
    cpu, gpu = get_backend("numpy", "complex128"), get_backend("cupy", "complex128")
    x = rng.standard_normal((2, 200, 200)) + 1j * rng.standard_normal((2, 200, 200))
    args = dict(n=200, pitch=36e-6, wavelength=532e-9, distance=0.3)
    pc, pg = make_propagator(cpu, **args), make_propagator(gpu, **args)
    yg = propagate(gpu.asarray(x), pg)
    np.testing.assert_allclose(gpu.to_numpy(yg), propagate(x, pc), atol=1e-12)
    np.testing.assert_allclose(gpu.to_numpy(propagate_transpose(gpu.asarray(x), pg)), gpu.to_numpy(yg), atol=1e-12)


@needs_scipy
@pytest.mark.parametrize("precision,tol", [("complex64", 1e-4), ("complex128", 1e-10)])
def test_cupy_ffm_gradient_matches_numpy(rng, precision, tol):
    g = Geometry.small()
    phases = rng.uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    x = rng.random((4, g.n, g.n))
    y = np.array([0, 3, 5, 9])
    grads = []
    for name in ("numpy", "cupy"):
        chip = SimulatedChip(
            g, HardwareSpec().symmetric_only(), MeasurementSpec.off(), seed=3, backend=get_backend(name, precision)
        )
        chip.program(phases)
        res = forward_only_step(chip, x, y, Objective(), 0, range(4))
        assert np.linalg.norm(
            res.grad_phase - true_gradient(chip, x, y, Objective()).grad_phase
        ) <= tol * np.linalg.norm(res.grad_phase)
        grads.append(res.grad_phase)
    assert np.linalg.norm(grads[0] - grads[1]) <= tol * np.linalg.norm(grads[0])


@needs_scipy
def test_cupy_noisy_step_runs_and_is_keyed(rng):
    g = Geometry.small()
    chip = SimulatedChip(g, seed=2, backend=get_backend("cupy"))
    x, y = rng.random((4, g.n, g.n)), np.array([1, 2, 3, 4])
    a = forward_only_step(chip, x, y, Objective(), 0, range(4))
    b = forward_only_step(chip, x, y, Objective(), 0, range(4))
    np.testing.assert_array_equal(a.grad_phase, b.grad_phase)
    assert isinstance(a.grad_phase, np.ndarray)


def test_cupy_noise_streams_equal_numpy(rng):
    """The same keyed streams on the GPU: normals bit for bit, measured taps to float32 rounding."""
    cpu, gpu = get_backend("numpy", "complex64"), get_backend("cupy", "complex64")
    key = PassKey(3, "error", (5, 2**33, 0), seed=7)
    normals = [b.to_numpy(keyed_normals(key, 2, (17, 3), b)) for b in (cpu, gpu)]
    np.testing.assert_array_equal(normals[0], normals[1])
    field = ((rng.normal(size=(3, 16, 16)) + 1j * rng.normal(size=(3, 16, 16))) / 16).astype(np.complex64)
    spec, scale = MeasurementSpec(level=3.0), np.array([0.5, 1.0, 2.0]).reshape(-1, 1, 1)
    measured = []
    for b in (cpu, gpu):
        f = b.asarray(field.copy())
        measure_field_(f, spec, key, 4, b, b.asarray(scale), reference_rotation(spec, key, b))
        measured.append(b.to_numpy(f))
    np.testing.assert_allclose(measured[1], measured[0], rtol=1e-6, atol=1e-7)


def test_cupy_unpadded_twin_and_input_cache_match_numpy(rng):
    """The fused load kernel without padding (n_pad == n), and cached input planes, against NumPy."""
    from optics.diffractive.chip import DigitalTwin

    g = Geometry.small(pad=0, force_padding=True)
    phases = rng.uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    x, y = rng.random((4, g.n, g.n)), np.array([0, 3, 5, 9])
    grads = []
    for name, cache in (("numpy", 0), ("cupy", 0), ("cupy", 8)):
        twin = DigitalTwin(g, get_backend(name, "complex128"), input_cache=cache)
        twin.program(phases)
        first = forward_only_step(twin, x, y, Objective(), 0, range(4)).grad_phase
        again = forward_only_step(twin, x, y, Objective(), 0, range(4)).grad_phase
        np.testing.assert_array_equal(first, again)
        grads.append(first)
    assert twin._input_cache.hits == 1
    np.testing.assert_allclose(grads[1], grads[0], rtol=0, atol=1e-10 * np.abs(grads[0]).max())
    np.testing.assert_array_equal(grads[2], grads[1])


@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 4, 16)])
def test_cupy_phase_gradient_kernel_matches_einsum(rng, shape):
    """The fused batch-sum kernel, for camera planes (n, n) and MZI output modes (N,)."""
    from optics.core.ffm import phase_gradient

    gpu = get_backend("cupy", "complex128")
    u = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    e = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    got = gpu.to_numpy(phase_gradient(gpu.asarray(u), gpu.asarray(e)))
    np.testing.assert_allclose(got, phase_gradient(u, e), rtol=1e-12, atol=1e-12)
