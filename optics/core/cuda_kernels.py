"""CUDA sources of the fused CuPy kernels (compiled by :func:`optics.core.backend._cupy_kernels`).

Each entry is the ``(in_params, out_params, operation, name)`` of a ``cupy.ElementwiseKernel``;
this module holds text only and imports no GPU library.
"""

# pad(field * mult) into the workspace (B, npad, npad) at offset o, border zeroed, product
# stored: one pass over memory per hop
LOAD = (
    "raw T src, raw T mult, raw T store, int64 n, int64 npad, int64 o, bool in_place, bool has_mult, bool has_store",
    "T buf",
    """
            long long j = i % npad, r = (i / npad) % npad, b = i / (npad * npad);
            long long ci = r - o, cj = j - o;
            if (ci >= 0 && ci < n && cj >= 0 && cj < n) {
                long long k = (b * n + ci) * n + cj;
                T v = in_place ? buf : src[k];
                if (has_mult) v = v * mult[ci * n + cj];
                if (has_store) store[k] = v;
                buf = v;
            } else {
                buf = T(0);
            }
            """,
    "ffm_load",
)

# dL/dphi = -2 Im(sum_b u eps) for taps (L, B, P) -> (L, P) radians^-1, coalesced over P,
# one pass over each tap
PHASE_GRAD = (
    "raw T u, raw T e, int64 nb, int64 npix",
    "R g",
    """
            long long l = i / npix, p = i % npix;
            R acc = 0;
            for (long long b = 0; b < nb; ++b) {
                long long k = (l * nb + b) * npix + p;
                T x = u[k], y = e[k];
                acc += x.real() * y.imag() + x.imag() * y.real();
            }
            g = -2 * acc;
            """,
    "ffm_phase_grad",
)
