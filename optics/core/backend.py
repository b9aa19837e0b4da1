"""Array backend: NumPy (CPU, FFTW plans) or CuPy (GPU), chosen per chip object.

This is the only module that imports CuPy, and it does so lazily, inside
:func:`get_backend`. Nothing here is a process global: every chip, twin and
propagator holds its own :class:`Backend`, so a process can run a CPU chip and a GPU
chip side by side.

On the CPU a pass runs in *blocks* of samples (:meth:`Backend.map_blocks`): each of
``fft_threads`` workers takes a contiguous share of the batch and carries one block (about
``block_bytes``, a core's L2 cache) through every layer before the next, with its own
single-threaded FFTW plans. Samples are independent in every pass, so the results are those of
the whole-batch computation; the gain is cache reuse and elementwise work on every core
(NumPy's own is single-threaded), 1.6-1.8x on the hop chain at 256^2 on the 2-core machine.

FFTs are *unnormalised* in both directions (``ifft2(fft2(x)) == N * x`` for ``N``
pixels); callers fold the ``1/N`` into their transfer functions, which saves a pass
over memory per propagation. Transforms are in place on a cached, aligned workspace
per batch shape; on the CPU they run through FFTW plans made once per shape
(pyFFTW, see ``PLANNERS``), which measured 1.3-3x faster than ``scipy.fft`` on the
2-core reference machine (``docs/performance.md``). Without pyFFTW the CPU backend
falls back to ``scipy.fft`` with worker threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optics.core import cuda_kernels
from optics.core.fftw_wisdom import planned

BACKENDS = ("numpy", "cupy")
# FFTW planning rigour. 'measure' times candidate algorithms (1.3x faster than 'estimate' at
# 264^2 and 7x at 256^2 on the reference machine) and shares the chosen plans through a wisdom
# file (optics.core.fftw_wisdom), so every process on the machine makes the same plans and results
# are bitwise reproducible across processes (a restarted chip, a resumed run). 'estimate' picks
# by heuristics without the file (deterministic too, unless the process already holds measured
# wisdom for that transform, which FFTW then uses).
PLANNERS = {"estimate": "FFTW_ESTIMATE", "measure": "FFTW_MEASURE"}
PRECISIONS = {"complex64": (np.complex64, np.float32), "complex128": (np.complex128, np.float64)}


def _fft_threads(requested: int | None) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"fft_threads must be >= 1, got {requested}; pass a positive thread count")
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(eq=False)
class Backend:
    """Array namespace, dtypes and in-place FFTs for one chip.

    Attributes: ``name`` ('numpy' or 'cupy'), ``xp`` (the array module), ``complex_dtype``
    and ``real_dtype`` (complex64/float32 by default, complex128/float64 on request).
    """

    name: str
    xp: Any
    complex_dtype: Any
    real_dtype: Any
    fft_threads: int = 1
    fft_planner: str = "measure"
    block_bytes: int = 1 << 19
    _plans: dict = field(default_factory=dict, repr=False)
    _work: dict = field(default_factory=dict, repr=False)
    _pool: Any = field(default=None, repr=False)
    _pool_pid: int = field(default=-1, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    # -- transfers -------------------------------------------------------------------
    def asarray(self, x, dtype=None):
        """Array on this backend's device (no copy when already there with that dtype)."""
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        """NumPy copy of ``x`` (a host transfer on the GPU backend)."""
        if self.name == "cupy":
            return self.xp.asnumpy(x)
        return np.asarray(x)

    @property
    def ndimage(self):
        """``scipy.ndimage`` or ``cupyx.scipy.ndimage`` (filters and shifts of real maps)."""
        if self.name == "cupy":
            from cupyx.scipy import ndimage
        else:
            from scipy import ndimage
        return ndimage

    # -- FFTs --------------------------------------------------------------------------
    def workspace(self, shape: tuple[int, ...], worker: int | None = None):
        """A cached complex buffer of ``shape`` (aligned for FFTW on the CPU).

        The buffer is reused by every call with that shape (and ``worker``, the block worker
        of :meth:`map_blocks` that owns it, whose FFTs are single-threaded): copy out what you
        keep.
        """
        shape = tuple(int(s) for s in shape)
        key = (shape, worker)
        buf = self._work.get(key)
        if buf is None:
            with self._lock:  # FFTW planning is not thread-safe
                if self.name == "numpy" and _pyfftw() is not None:
                    buf = _pyfftw().empty_aligned(shape, dtype=self.complex_dtype)
                    # FFTW_MEASURE overwrites the buffer: plan before use
                    self._make_plans(buf, 1 if worker is not None else self.fft_threads)
                else:
                    buf = self.xp.empty(shape, dtype=self.complex_dtype)
                self._work[key] = buf
        return buf

    # -- blocked execution (CPU) -------------------------------------------------------
    def block_size(self, n_pad: int) -> int:
        """Samples per CPU block: as many (n_pad, n_pad) fields as fit in ``block_bytes``."""
        field_bytes = int(n_pad) ** 2 * np.dtype(self.complex_dtype).itemsize
        return max(1, self.block_bytes // field_bytes)

    def map_blocks(self, fn, batch: int, n_pad: int) -> None:
        """Call ``fn(block, worker)`` over ``range(batch)`` in blocks (``block`` a slice).

        CuPy: one call with the whole batch and ``worker=None`` (one stream, whole-batch
        cuFFT plans). NumPy: blocks of :meth:`block_size` samples, shared out in contiguous
        runs among ``fft_threads`` workers (the calling thread is worker 0); ``fn`` must only
        write its own block's rows. NumPy ufuncs and FFTW release the GIL, so workers run on
        separate cores. The first exception raised by any worker is re-raised here.
        """
        if self.name == "cupy" or batch <= 0:
            fn(slice(0, batch), None)
            return
        step = self.block_size(n_pad)
        blocks = [slice(i, min(i + step, batch)) for i in range(0, batch, step)]
        self._run_shares(fn, blocks)

    def map_split(self, fn, total: int) -> None:
        """Call ``fn(part, worker)`` on ``fft_threads`` contiguous parts of ``range(total)``
        (CuPy: one call with the whole range), for reductions over the batch split by pixel."""
        if self.name == "cupy" or total <= 0:
            fn(slice(0, total), None)
            return
        parts = min(self.fft_threads, total)
        self._run_shares(fn, [slice(total * w // parts, total * (w + 1) // parts) for w in range(parts)])

    def _run_shares(self, fn, blocks: list) -> None:
        """Share ``blocks`` out in contiguous runs among the workers; worker 0 is this thread."""
        workers = min(self.fft_threads, len(blocks))
        shares = [blocks[len(blocks) * w // workers : len(blocks) * (w + 1) // workers] for w in range(workers)]

        def run(w):
            for block in shares[w]:
                fn(block, w)

        if workers == 1:
            run(0)
            return
        if self._pool is None or self._pool_pid != os.getpid():  # a forked child has no pool threads
            self._pool = ThreadPoolExecutor(self.fft_threads - 1, thread_name_prefix="ffm-block")
            self._pool_pid = os.getpid()
        futures = [self._pool.submit(run, w) for w in range(1, workers)]
        try:
            run(0)
        finally:
            errors = [f.exception() for f in futures]
        for err in errors:
            if err is not None:
                raise err

    def fft2_(self, buf) -> None:
        """Unnormalised forward 2-D FFT over the last two axes, in place."""
        self._transform(buf, forward=True)

    def propagate_(self, buf, kernel) -> None:
        """``buf <- IFFT(kernel * FFT(buf))`` in place, unnormalised (the 1/N lives in ``kernel``)."""
        self._transform(buf, forward=True)
        buf *= kernel
        self._transform(buf, forward=False)

    def load_(self, buf, field, offset: int, mult=None, store=None) -> None:
        """CuPy only: one fused kernel writes ``pad(field * mult)`` into the workspace ``buf``
        (B, n_pad, n_pad), zeroing the border, and ``field * mult`` into ``store`` when given.
        ``field`` is (B, n, n) C-contiguous or the centre view of ``buf`` itself."""
        xp = self.xp
        n_pad, n = buf.shape[-1], field.shape[-1]
        centre = buf[:, offset : offset + n, offset : offset + n]
        in_place = field.data.ptr == centre.data.ptr and field.strides == centre.strides
        if not in_place and (field.dtype != buf.dtype or not field.flags.c_contiguous):
            field = xp.ascontiguousarray(field, dtype=buf.dtype)
        has_mult, has_store = mult is not None, store is not None
        if has_mult and (mult.dtype != buf.dtype or not mult.flags.c_contiguous):
            mult = xp.ascontiguousarray(mult, dtype=buf.dtype)
        dummy = buf[:1, :1, :1]
        _cupy_kernels()["load"](
            field if not in_place else dummy,
            mult if has_mult else dummy,
            store if has_store else dummy,
            n,
            n_pad,
            offset,
            in_place,
            has_mult,
            has_store,
            buf,
        )

    def _transform(self, buf, forward: bool) -> None:
        if self.name == "cupy":
            plan = self._plans.get((buf.shape, "cufft"))
            if plan is None:
                plan = self._plans[(buf.shape, "cufft")] = _cufft_plan(buf)
            if plan is not False:
                from cupy.cuda import cufft

                try:
                    plan.fft(buf, buf, cufft.CUFFT_FORWARD if forward else cufft.CUFFT_INVERSE)
                    return
                except Exception:  # noqa: BLE001  (a CuPy whose plan API differs: refused before running, buf intact)
                    self._plans[(buf.shape, "cufft")] = False
            _cupy_fft_inplace(buf, forward)
            return
        fftw = _pyfftw()
        plan = self._plans.get((_address(buf), buf.shape, forward)) if fftw is not None else None
        if plan is None:
            import scipy.fft as sfft

            fn = sfft.fft2 if forward else sfft.ifft2
            buf[...] = fn(
                buf,
                axes=(-2, -1),
                norm="backward" if forward else "forward",
                workers=self.fft_threads,
                overwrite_x=True,
            )
            return
        plan.execute()

    def _make_plans(self, buf, threads: int) -> None:
        fftw = _pyfftw()

        def make(forward: bool):
            return fftw.FFTW(
                buf,
                buf,
                axes=(-2, -1),
                direction="FFTW_FORWARD" if forward else "FFTW_BACKWARD",
                flags=(PLANNERS[self.fft_planner], "FFTW_DESTROY_INPUT"),
                threads=threads,
                planning_timelimit=10.0,
            )

        for forward in (True, False):
            plan = planned(lambda forward=forward: make(forward)) if self.fft_planner == "measure" else make(forward)
            self._plans[(_address(buf), buf.shape, forward)] = plan

    # Ray and multiprocessing pickle chips: plans and workspaces are rebuilt on arrival.
    def __getstate__(self):
        return {
            "name": self.name,
            "precision": np.dtype(self.complex_dtype).name,
            "fft_threads": self.fft_threads,
            "fft_planner": self.fft_planner,
            "block_bytes": self.block_bytes,
        }

    def __setstate__(self, state):
        fresh = get_backend(state["name"], state["precision"], state["fft_threads"], state["fft_planner"])
        fresh.block_bytes = state.get("block_bytes", fresh.block_bytes)
        self.__dict__.update(fresh.__dict__)


def _address(buf) -> int:
    """Data pointer of a NumPy array (a workspace's plans are keyed by it)."""
    return buf.__array_interface__["data"][0]


def _cupy_fft_inplace(buf, forward: bool) -> None:
    import cupyx.scipy.fft as cfft

    if forward:
        cfft.fft2(buf, axes=(-2, -1), overwrite_x=True, norm="backward")
    else:
        cfft.ifft2(buf, axes=(-2, -1), overwrite_x=True, norm="forward")


def _cufft_plan(buf):
    """A cached cuFFT plan for in-place 2-D transforms over the last two axes of ``buf``
    (False where CuPy cannot make one: then ``cupyx.scipy.fft`` plans through its own cache)."""
    try:
        from cupyx.scipy.fftpack import get_fft_plan

        return get_fft_plan(buf, axes=(-2, -1), value_type="C2C")
    except Exception:  # noqa: BLE001  (an older CuPy or an unsupported layout)
        return False


_KERNELS: dict = {}


def _cupy_kernels() -> dict:
    """Fused CuPy kernels (compiled once per process, on first use)."""
    if not _KERNELS:
        import cupy as cp

        _KERNELS["load"] = cp.ElementwiseKernel(*cuda_kernels.LOAD)
        _KERNELS["phase_grad"] = cp.ElementwiseKernel(*cuda_kernels.PHASE_GRAD)
    return _KERNELS


_PYFFTW: list = []


def _pyfftw():
    """pyFFTW module, or None where it is not installed (imported once, lazily)."""
    if not _PYFFTW:
        try:
            import pyfftw

            _PYFFTW.append(pyfftw)
        except ImportError:
            _PYFFTW.append(None)
    return _PYFFTW[0]


def get_backend(
    name: str = "numpy", precision: str = "complex64", fft_threads: int | None = None, fft_planner: str = "measure"
) -> Backend:
    """A new backend: ``name`` in ('numpy', 'cupy'), ``precision`` in ('complex64', 'complex128'),
    ``fft_planner`` in ('estimate', 'measure') for FFTW (see ``PLANNERS``).

    Raises a one-line ``ValueError`` for unknown names and a ``RuntimeError`` naming the
    extra to install when CuPy or a CUDA device is missing.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if fft_planner not in PLANNERS:
        raise ValueError(f"fft_planner must be one of {tuple(PLANNERS)}, got {fft_planner!r}")
    cdt, rdt = PRECISIONS[precision]
    if name == "numpy":
        return Backend("numpy", np, cdt, rdt, _fft_threads(fft_threads), fft_planner)
    try:
        import cupy as cp

        cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDARuntimeError
        raise RuntimeError(
            f"backend='cupy' needs CuPy and a CUDA device ({type(exc).__name__}); "
            "install the extra: pip install 'ffm-optics[gpu]' (CUDA 12) or '[gpu-cuda13]'"
        ) from exc
    return Backend("cupy", cp, cp.dtype(cdt).type, cp.dtype(rdt).type, 1)


def gpu_available() -> bool:
    """True where CuPy imports and sees at least one CUDA device."""
    try:
        get_backend("cupy")
    except RuntimeError:
        return False
    return True


def array_namespace(x):
    """NumPy or CuPy module of array ``x`` (CuPy is already imported if ``x`` is CuPy)."""
    import sys

    top = type(x).__module__.split(".")[0]
    return sys.modules[top] if top == "cupy" else np
