"""Blocked CPU execution: passes split into sample blocks over worker threads give the
whole-batch results, cover every sample once, and surface worker errors."""

import dataclasses
import threading

import numpy as np
import pytest

from optics import DigitalTwin, Geometry, Objective, SimulatedChip, forward_only_step, get_backend
from optics.core.ffm import batch_product, phase_gradient
from optics.core.propagation import make_propagator, propagate
from optics.diffractive.donn import data_pass, error_pass, output_field

GEOM = Geometry(
    n=48, pitch=8e-6, wavelength=532e-9, distance=0.01, n_layers=3, n_classes=4, detector_px=6, object_px=24
)


def _backend(threads: int, block_bytes: int, precision: str = "complex128"):
    be = get_backend("numpy", precision, fft_threads=threads)
    be.block_bytes = block_bytes
    return be


def _field(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def test_blocks_cover_every_sample_once_in_contiguous_runs():
    be = _backend(2, 1)  # one sample per block
    seen, owners = [], {}
    lock = threading.Lock()

    def fn(block, worker):
        with lock:
            seen.extend(range(block.start, block.stop))
            owners.setdefault(worker, []).append(block.start)

    be.map_blocks(fn, 7, 16)
    assert sorted(seen) == list(range(7))
    assert set(owners) == {0, 1}
    runs = [sorted(v) for v in owners.values()]
    assert all(r == list(range(r[0], r[-1] + 1)) for r in runs)  # contiguous shares
    assert be.block_size(16) == 1 and _backend(1, 1 << 19, "complex64").block_size(64) == 16


def test_worker_error_is_raised_in_the_caller():
    be = _backend(2, 1)

    def fn(block, worker):
        if worker == 1:
            raise RuntimeError("boom in worker 1")

    with pytest.raises(RuntimeError, match="boom in worker 1"):
        be.map_blocks(fn, 4, 16)
    be.map_blocks(lambda block, worker: None, 4, 16)  # the pool still works afterwards


@pytest.mark.parametrize("threads,block_bytes", [(2, 1), (2, 3 * 64 * 64 * 16), (1, 1)])
def test_blocked_passes_equal_whole_batch(rng, threads, block_bytes):
    whole, blocked = _backend(1, 1 << 40), _backend(threads, block_bytes)
    batch, n, layers = 5, 32, 3
    x = _field(rng, (batch, n, n))
    e = _field(rng, (batch, n, n))
    t = np.exp(1j * rng.uniform(0, 2 * np.pi, (layers, n, n)))
    out = {}
    for name, be in (("whole", whole), ("blocked", blocked)):
        props = [make_propagator(be, n, 8e-6, 532e-9, 2e-3) for _ in range(layers + 1)]
        d = data_pass(x, t, props)
        r = error_pass(e, t, props, transpose=True, to_input=True)
        out[name] = (
            d.fields,
            d.output,
            d.intensity,
            r.fields,
            r.output,
            output_field(x, t, props),
            propagate(x, props[0]),
        )
    for a, b in zip(out["whole"], out["blocked"]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.abs(a).max())


def test_threaded_batch_product_equals_einsum(rng):
    u, eps = _field(rng, (3, 6, 10, 10)), _field(rng, (3, 6, 10, 10))
    ref = np.einsum("lb...,lb...->l...", u, eps)
    np.testing.assert_allclose(batch_product(u, eps, _backend(2, 1)), ref, rtol=1e-12)
    np.testing.assert_allclose(phase_gradient(u, eps, _backend(2, 1)), -2 * ref.imag, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("precision", ["complex64", "complex128"])
@pytest.mark.parametrize("chip_kind", ["twin", "chip"])
def test_step_does_not_depend_on_blocking_or_threads(chip_kind, precision):
    """The FFM step (and a simulated chip's keyed noise) is bitwise the same on one machine for
    any thread count: the blocks (and so the FFT plans) depend on ``block_bytes`` only, a
    thread only decides which worker runs a block, and the batch sum is split by pixel, never
    by sample. Other block sizes batch the FFTs differently: equal to float rounding."""
    x = np.random.default_rng(3).uniform(0, 1, (6, GEOM.n, GEOM.n)).astype(np.float32)
    y = np.arange(6) % 4
    phases = np.random.default_rng(4).uniform(0, 2 * np.pi, (GEOM.n_layers, GEOM.n, GEOM.n))
    tol = {"complex64": 1e-5, "complex128": 1e-9}[precision]
    by_block = {}
    for block_bytes in (1, 1 << 19, 1 << 40):
        grads = []
        for threads in (1, 2):
            be = _backend(threads, block_bytes, precision)
            chip = DigitalTwin(GEOM, be) if chip_kind == "twin" else SimulatedChip(GEOM, seed=2, backend=be)
            chip.program(phases)
            grads.append(forward_only_step(chip, x, y, Objective(), 3, range(6)).grad_phase)
        np.testing.assert_array_equal(grads[1], grads[0])
        by_block[block_bytes] = grads[0]
    for g in by_block.values():
        np.testing.assert_allclose(g, by_block[1], rtol=tol, atol=tol * np.abs(by_block[1]).max())


def test_block_bytes_survives_pickling():
    import pickle

    be = dataclasses.replace(get_backend("numpy", "complex64", fft_threads=2), block_bytes=12345)
    assert pickle.loads(pickle.dumps(be)).block_bytes == 12345


@pytest.mark.parametrize("per_pass", [1, 2, 4])
def test_memory_lean_step_equals_whole_batch(per_pass):
    """``samples_per_pass`` holds fewer taps and gives the same step (noisy chip, amplitudes on)."""
    be = get_backend("numpy", "complex128", fft_threads=1)
    chip = SimulatedChip(GEOM, seed=5, backend=be)
    rng = np.random.default_rng(6)
    chip.program(
        rng.uniform(0, 2 * np.pi, (GEOM.n_layers, GEOM.n, GEOM.n)),
        rng.uniform(0.5, 1.0, (GEOM.n_layers, GEOM.n, GEOM.n)),
    )
    x = rng.uniform(0, 1, (5, GEOM.n, GEOM.n))
    y = np.array([0, 1, 2, 3, 1])
    whole = forward_only_step(chip, x, y, Objective(), 7, range(10, 15))
    lean = forward_only_step(chip, x, y, Objective(), 7, range(10, 15), samples_per_pass=per_pass)
    assert lean.n_samples == 5 and lean.n_correct == whole.n_correct
    assert lean.loss == pytest.approx(whole.loss, rel=1e-12)
    np.testing.assert_allclose(lean.scores, whole.scores, rtol=1e-12)
    for a, b in ((lean.grad_phase, whole.grad_phase), (lean.grad_amplitude, whole.grad_amplitude)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())
    with pytest.raises(ValueError, match="samples_per_pass must be >= 1"):
        forward_only_step(chip, x, y, Objective(), 7, range(10, 15), samples_per_pass=0)


def test_input_plane_cache_serves_exact_fields_and_never_stale():
    """``input_cache``: a batch seen before skips ``P_0`` with identical results, in order or
    shuffled; a changed input is recomputed; the least recently used samples are evicted."""
    be = get_backend("numpy", "complex128", fft_threads=2)
    rng = np.random.default_rng(8)
    phases = rng.uniform(0, 2 * np.pi, (GEOM.n_layers, GEOM.n, GEOM.n))
    plain, cached = DigitalTwin(GEOM, be), DigitalTwin(GEOM, be, input_cache=8)
    plain.program(phases)
    cached.program(phases)
    x = rng.uniform(0, 1, (6, GEOM.n, GEOM.n))
    y = np.arange(6) % 4
    cache = cached._input_cache

    def same(xb, yb):
        a = forward_only_step(plain, xb, yb, Objective(), 0, range(len(yb))).grad_phase
        b = forward_only_step(cached, xb, yb, Objective(), 0, range(len(yb))).grad_phase
        np.testing.assert_array_equal(b, a)

    same(x, y)
    assert (cache.hits, cache.misses) == (0, 1)
    # a sample's key is exact integer arithmetic: the same in any batch (no BLAS rounding)
    keys6 = cache.keys(x.astype(be.complex_dtype))
    for sub in (np.array([4, 0, 5, 2]), np.array([3]), np.arange(6)[::-1]):
        assert cache.keys(x[sub].astype(be.complex_dtype)) == [keys6[i] for i in sub]
    words = x[2].astype(be.complex_dtype).view(np.uint64).ravel()
    reference = [sum(int(a) * int(b) for a, b in zip(words, cache._w[:, j])) % 2**64 for j in (0, 1)]
    assert np.frombuffer(keys6[2], dtype=np.uint64).tolist() == reference
    same(x, y)  # stored in order: served as a view
    order = np.array([4, 0, 5, 2])
    same(x[order], y[order])  # shuffled: gathered
    assert cache.hits == 2
    x2 = x.copy()
    x2[1, 3, 3] += 0.5
    same(x2[:4], y[:4])  # one pixel changed: recomputed, not stale
    assert cache.misses == 2
    same(rng.uniform(0, 1, (6, GEOM.n, GEOM.n)), y)  # 6 new samples evict the oldest
    assert len(cache._slots) == 8


def test_a_forked_child_makes_its_own_worker_threads():
    """A fork copies the backend but not its pool's threads: the child must not wait on them."""
    import multiprocessing as mp

    be = _backend(2, 1)
    be.map_blocks(lambda block, worker: None, 4, 16)  # the parent's pool exists
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=be.map_blocks, args=(lambda block, worker: None, 4, 16))
    proc.start()
    proc.join(60)
    if proc.is_alive():  # hung on threads that do not exist in the child
        proc.kill()
    assert proc.exitcode == 0
