"""Compiled CPU kernels of a camera frame (Numba): keyed Poisson shot noise, read noise and ADC.

Poisson counts follow :func:`optics.core.keyed_rng.poisson` (inversion below ``lam = 10``,
PTRS above). Most pixels are decided by their first attempt, so that attempt runs for the
whole row in loops LLVM vectorises (:func:`_first_attempt_`): the Philox words of every pixel,
then the inversion pixels in chunks over at most 24 terms (a chunk stops when all its pixels
are decided), then PTRS with its squeeze and its log test over the other pixels. ``ln`` and
``exp`` there are written out as polynomials (:func:`_log`, :func:`_exp_neg`, within a few
ulp of the C library's), since a loop that calls the C library does not vectorise. Pixels
left (a rejected attempt, an inversion past 24 terms) finish in further vectorised attempts
or scalar code with the same functions. Counts equal the NumPy reference's except where a
uniform falls within rounding of an acceptance boundary (about 1e-15 per pixel).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from optics.core import keyed_rng as ref
from optics.core.noise_kernels import JIT, U64, _normals_row, _peak, _philox, _quantise_

INV_MAX, MAX_ATTEMPTS = ref.POISSON_INVERSION_MAX, ref.POISSON_MAX_ATTEMPTS
LOG_FACTORIALS, HALF_LOG_2PI, INVERSE_K = ref.LOG_FACTORIALS, ref.HALF_LOG_2PI, ref.INVERSE_K
INVERSION_TERMS = 24
#: inversion terms below this are dropped: ``u`` is at least 2^-54, so they never decide a count
TINY = 1e-280
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
LOG2E = 1.4426950408889634
SQRT2 = math.sqrt(2.0)
# e^r = sum r^j / j!, |r| <= ln(2) / 2: 13 terms leave < 2e-16
EXP_COEFFS = np.array([1.0 / math.factorial(j) for j in range(13)])
TWO_POW_NEG = np.array([2.0**-j for j in range(17)])
# ln m = 2 s sum s^(2j) / (2j + 1), s = (m - 1) / (m + 1), |s| <= 0.172: 12 terms leave < 1e-19
LOG_COEFFS = np.array([1.0 / (2 * j + 1) for j in range(12)])
L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11 = (float(c) for c in LOG_COEFFS)
E0, E1, E2, E3, E4, E5, E6, E7, E8, E9, E10, E11, E12 = (float(c) for c in EXP_COEFFS)
MANTISSA = U64(0x000FFFFFFFFFFFFF)
ONE_BITS = U64(0x3FF0000000000000)


@intrinsic
def _f64_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@njit(inline="always", **JIT)
def _log(x):
    """``ln x`` for finite normal ``x > 0``: exponent, then ``2 atanh((m - 1) / (m + 1))``."""
    bits = _f64_bits(x)
    exponent = np.float64(np.int64(bits >> U64(52)) - 1023)
    m = _bits_f64((bits & MANTISSA) | ONE_BITS)
    big = m > SQRT2
    m = m * (0.5 if big else 1.0)
    exponent = exponent + (1.0 if big else 0.0)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    poly = (
        (((((((((L11 * z + L10) * z + L9) * z + L8) * z + L7) * z + L6) * z + L5) * z + L4) * z + L3) * z + L2) * z + L1
    ) * z + L0
    return exponent * LN2_HI + (exponent * LN2_LO + (s + s) * poly)


@njit(inline="always", **JIT)
def _exp_neg(x):
    """``exp(-x)`` for ``0 <= x <= 10``: ``2^-n e^r``, ``r = -x + n ln 2``."""
    n = math.floor(x * LOG2E + 0.5)
    r = (n * LN2_HI - x) + n * LN2_LO
    poly = (
        (
            (((((((((E12 * r + E11) * r + E10) * r + E9) * r + E8) * r + E7) * r + E6) * r + E5) * r + E4) * r + E3) * r
            + E2
        )
        * r
        + E1
    ) * r + E0
    return poly * TWO_POW_NEG[int(n)]


@njit(inline="always", **JIT)
def _log_factorial(k):
    """``ln k!`` (:func:`optics.core.keyed_rng.log_factorial`) for integer-valued ``k >= 0``."""
    x = k + 1.0
    inv2 = 1.0 / (x * x)
    series = (x - 0.5) * _log(x) - x + HALF_LOG_2PI + (1.0 / 12.0 - (1.0 / 360.0 - inv2 / 1260.0) * inv2) / x
    table = LOG_FACTORIALS[int(min(max(k, 0.0), LOG_FACTORIALS.shape[0] - 1.0))]
    return table if k < LOG_FACTORIALS.shape[0] else series


@njit(inline="always", **JIT)
def _unit_double(hi_word, lo_word):
    return ((hi_word >> U64(5)) * 67108864.0 + (lo_word >> U64(6)) + 0.5) * 2.0**-53


@njit(inline="always", **JIT)
def _ptrs_attempt(lam, u, v):
    """One PTRS attempt from ``u`` uniform in (-1/2, 1/2) and ``v`` in (0, 1), without branches:
    ``(k, accepted)``."""
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    us = 0.5 - abs(u)
    k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
    squeeze = (us >= 0.07) & (v <= 0.9277 - 3.6224 / (b - 2.0))
    lhs = _log(v * (1.1239 + 1.1328 / (b - 3.4)) / (a / (us * us) + b))
    rhs = -lam + k * _log(lam) - _log_factorial(max(k, 0.0))
    return k, squeeze | ((k >= 0) & ((us >= 0.013) | (v <= us)) & (lhs <= rhs))


CHUNK = 256  # pixels per inversion chunk: its five arrays stay in L1


@njit(**JIT)
def _invert_(out, lam, u, idx, count):
    """Inversion for the ``count`` pixels ``idx`` (means below 10), in chunks, over at most 24
    terms in vectorised loops: ``out[p]`` the count, or -2 where 24 terms did not reach ``u``."""
    lam_s, u_s, prob, cdf, k = np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK), np.empty(CHUNK)
    for start in range(0, count, CHUNK):
        m = min(CHUNK, count - start)
        for t in range(m):
            lam_s[t] = lam[idx[start + t]]
            u_s[t] = u[idx[start + t]]
            prob[t] = _exp_neg(lam_s[t])
            cdf[t] = prob[t]
            k[t] = 1.0 if u_s[t] > cdf[t] else 0.0
        for j in range(1, INVERSION_TERMS):
            left = 0
            for t in range(m):
                term = prob[t] * (lam_s[t] * INVERSE_K[j])
                prob[t] = term if term > TINY else 0.0  # no subnormals (slow); cannot move a decision
                cdf[t] = cdf[t] + prob[t]
                above = u_s[t] > cdf[t]
                k[t] += 1.0 if above else 0.0
                left += 1 if above else 0
            if left == 0:  # every pixel of the chunk decided: later terms change nothing
                break
        for t in range(m):
            out[idx[start + t]] = k[t] if u_s[t] <= cdf[t] else -2.0


@njit(**JIT)
def _ptrs_first_(out, lam, u, v, idx, count):
    """PTRS's first attempt for the ``count`` pixels ``idx`` (means >= 10), vectorised:
    ``out[p]`` the count, or -1 where the attempt was rejected."""
    for t in range(count):
        p = idx[t]
        k, accepted = _ptrs_attempt(lam[p], u[p] - 0.5, v[p])
        out[p] = k if accepted else -1.0


@njit(**JIT)
def _first_attempt_(out, lam, lo, hi, k0, k1):
    """Every pixel's first attempt: the words of the whole row in one vectorised loop, then the
    inversion pixels and the PTRS pixels each as one list. ``out[p]`` is the count, -1 for a
    rejected PTRS attempt, -2 for an inversion past 24 terms."""
    n = out.shape[0]
    u, v = np.empty(n), np.empty(n)
    for p in range(n):
        r0, r1, r2, r3 = _philox(U64(p), U64(0), lo, hi, k0, k1)
        u[p] = _unit_double(r0, r1)
        v[p] = _unit_double(r2, r3)
    small, large = np.empty(n, np.int64), np.empty(n, np.int64)
    n_small = n_large = 0
    for p in range(n):
        if lam[p] < INV_MAX:
            small[n_small] = p
            n_small += 1
        else:
            large[n_large] = p
            n_large += 1
    _invert_(out, lam, u, small, n_small)
    _ptrs_first_(out, lam, u, v, large, n_large)


@njit(**JIT)
def _poisson_one(lam, pixel, lo, hi, k0, k1):
    """One keyed Poisson count, every attempt (:func:`optics.core.keyed_rng.poisson`)."""
    if lam < INV_MAX:
        r0, r1, _, _ = _philox(U64(pixel), U64(0), lo, hi, k0, k1)
        u = _unit_double(r0, r1)
        p = _exp_neg(lam)
        cdf, k = p, 0
        while u > cdf and k < INVERSE_K.shape[0] - 1:
            k += 1
            p = p * (lam * INVERSE_K[k])
            cdf = cdf + p
        return float(k)
    for attempt in range(MAX_ATTEMPTS):
        r0, r1, r2, r3 = _philox(U64(pixel), U64(attempt), lo, hi, k0, k1)
        k, accepted = _ptrs_attempt(lam, _unit_double(r0, r1) - 0.5, _unit_double(r2, r3))
        if accepted:
            return k
    return math.floor(lam + 0.5)


@njit(**JIT)
def _finish_ptrs_(out, lam, lo, hi, k0, k1):
    """Pixels whose first PTRS attempt was rejected (``out == -1``): attempts 1, 2, ... over the
    shrinking list of those still undecided, each attempt one vectorised loop."""
    idx = np.empty(out.shape[0], np.int64)
    count = 0
    for p in range(out.shape[0]):
        if out[p] == -1.0:
            idx[count] = p
            count += 1
    counts, accepted = np.empty(count), np.empty(count, np.bool_)
    for attempt in range(1, MAX_ATTEMPTS):
        if count == 0:
            return
        for t in range(count):
            p = idx[t]
            r0, r1, r2, r3 = _philox(U64(p), U64(attempt), lo, hi, k0, k1)
            counts[t], accepted[t] = _ptrs_attempt(lam[p], _unit_double(r0, r1) - 0.5, _unit_double(r2, r3))
        left = 0
        for t in range(count):
            if accepted[t]:
                out[idx[t]] = counts[t]
            else:
                idx[left] = idx[t]
                left += 1
        count = left
    for t in range(count):  # never seen: each attempt accepts about 0.9
        out[idx[t]] = math.floor(lam[idx[t]] + 0.5)


@njit(**JIT)
def _poisson_row_(out, lam, lo, hi, k0, k1):
    """``out`` (P,) float64: keyed Poisson counts of ``lam`` (P,) float64 >= 0 for one sample."""
    _first_attempt_(out, lam, lo, hi, k0, k1)
    _finish_ptrs_(out, lam, lo, hi, k0, k1)
    for p in range(out.shape[0]):
        if out[p] == -2.0:  # an inversion past 24 terms (about 1e-4 of the pixels at a mean of 10)
            out[p] = _poisson_one(lam[p], p, lo, hi, k0, k1)


@njit(**JIT)
def poisson_rows(out, lam, lo, hi, k0, k1):
    """Keyed Poisson counts ``out`` (B, P) float64 of means ``lam`` (B, P) float64 >= 0."""
    for b in range(out.shape[0]):
        _poisson_row_(out[b], lam[b], U64(lo[b]), U64(hi[b]), U64(k0), U64(k1))


@njit(**JIT)
def detect_rows(out, intensity, lo, hi, shot_key, read_key, photoelectrons, read_std, adc_fraction, scratch):
    """A camera's frames: ``out`` (B, P) real from ``intensity`` (B, P) real:
    ``e = Poisson(QE N I) + read_std n`` clipped at 0, the ADC over the frame's peak, ``e / QE N``.

    ``shot_key``/``read_key`` (2,) uint32, ``photoelectrons`` ``QE N`` (finite), ``read_std``
    electrons (0: none), ``adc_fraction`` ``f`` (0: no ADC), ``scratch`` (P,) float32."""
    dt = out.dtype.type
    counts = np.empty(out.shape[1], np.float64)
    lam = np.empty(out.shape[1], np.float64)
    for b in range(out.shape[0]):
        slo, shi = U64(lo[b]), U64(hi[b])
        for p in range(out.shape[1]):
            lam[p] = max(np.float64(intensity[b, p]) * photoelectrons, 0.0)
        _poisson_row_(counts, lam, slo, shi, U64(shot_key[0]), U64(shot_key[1]))
        if read_std > 0:
            _normals_row(scratch, slo, shi, U64(read_key[0]), U64(read_key[1]))
        row = out[b]
        for p in range(out.shape[1]):
            e = dt(counts[p])
            if read_std > 0:
                e = e + read_std * dt(scratch[p])
            row[p] = max(e, dt(0))
        if adc_fraction > 0:
            _quantise_(row, max(_peak(row), dt(1e-30)) * adc_fraction)
        scale = dt(photoelectrons)
        for p in range(out.shape[1]):
            row[p] = row[p] / scale
