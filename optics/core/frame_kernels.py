"""Compiled CPU kernels of a camera frame (Numba): keyed Poisson shot noise, read noise and ADC.

Poisson counts follow :func:`optics.core.keyed_rng.poisson` (inversion below ``lam = 10``,
PTRS above), one row (sample) at a time in loops LLVM vectorises. Every pixel's Philox words
come first, for the whole row (:func:`_words_`); then the row's pixels are split into two index
lists. Inversion pixels get ``e^-lam`` and the first 8 terms of the search in one loop
(:func:`_invert_first_`); the undecided ones (12 % of a mid-size frame's inversion pixels, whose
means spread over 0-10) are compacted and get 4 more terms at a time, so the work follows each
pixel's count rather than the slowest pixel's. PTRS pixels get their first attempt, squeeze and log test in one
loop (:func:`_ptrs_first_`). ``ln`` and ``exp`` are written out as polynomials (:func:`_log`,
:func:`_exp_neg`, within a few ulp of the C library's), since a loop that calls the C library
does not vectorise. Pixels left (a rejected attempt, an inversion past 24 terms) finish in
further vectorised attempts or scalar code with the same functions. Work arrays are made once
per call, not per row. Counts equal the NumPy reference's except where a
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


FIRST_TERMS, STAGE_TERMS = 8, 4  # 8 terms decide 88 % of the inversion pixels of a mid-size frame
assert (INVERSION_TERMS - FIRST_TERMS) % STAGE_TERMS == 0  # the stages end at term 24 exactly


@njit(inline="always", **JIT)
def _inversion_term(prob, cdf, k, lam, u, j):
    """Term ``j`` of the search: ``p_j = p_(j-1) (lam (1/j))`` (dropped below :data:`TINY`),
    ``F_j = F_(j-1) + p_j``, ``k`` counts the terms with ``u > F_j``."""
    term = prob * (lam * INVERSE_K[j])
    prob = term if term > TINY else 0.0
    cdf = cdf + prob
    return prob, cdf, k + (1.0 if u > cdf else 0.0)


@njit(**JIT)
def _split_(lam, small, large):
    """The pixels with means below 10 (inversion) into ``small`` and the others (PTRS) into
    ``large``, without branches: ``(n_small, n_large)``."""
    n_small = n_large = 0
    for p in range(lam.shape[0]):
        below = lam[p] < INV_MAX
        small[n_small] = p
        large[n_large] = p
        n_small += 1 if below else 0
        n_large += 0 if below else 1
    return n_small, n_large


@njit(**JIT)
def _words_(u, v, lo, hi, k0, k1):
    """Attempt 0's uniforms of every pixel of the row: ``u`` and ``v`` (P,) in (0, 1)."""
    for p in range(u.shape[0]):
        r0, r1, r2, r3 = _philox(U64(p), U64(0), lo, hi, k0, k1)
        u[p] = _unit_double(r0, r1)
        v[p] = _unit_double(r2, r3)


@njit(**JIT)
def _gather_(dst, src, idx, count):
    """``dst[t] = src[idx[t]]``: a list's values made contiguous, so the loops over them vectorise."""
    for t in range(count):
        dst[t] = src[idx[t]]


@njit(**JIT)
def _invert_first_(count, state):
    """The first :data:`FIRST_TERMS` terms of the search for the first ``count`` columns of
    ``state`` (lam, u, p, F, k), vectorised."""
    for t in range(count):
        lm, u = state[0, t], state[1, t]
        prob = _exp_neg(lm)
        cdf, k = prob, (1.0 if u > prob else 0.0)
        for j in range(1, FIRST_TERMS):
            prob, cdf, k = _inversion_term(prob, cdf, k, lm, u, j)
        state[2, t], state[3, t], state[4, t] = prob, cdf, k


@njit(**JIT)
def _invert_more_(count, state, first):
    """Terms ``first .. first + STAGE_TERMS - 1`` for the first ``count`` columns of ``state``."""
    for t in range(count):
        lm, u, prob, cdf, k = state[0, t], state[1, t], state[2, t], state[3, t], state[4, t]
        for j in range(first, first + STAGE_TERMS):
            prob, cdf, k = _inversion_term(prob, cdf, k, lm, u, j)
        state[2, t], state[3, t], state[4, t] = prob, cdf, k


@njit(**JIT)
def _settle_(out, idx, count, state):
    """Write every listed pixel's count ``k`` to ``out``; keep those not yet decided (``u > F``),
    compacted at the front of ``idx`` and ``state``, without branches: how many are kept."""
    left = 0
    for t in range(count):
        p = idx[t]
        out[p] = state[4, t]
        idx[left] = p
        for r in range(5):
            state[r, left] = state[r, t]
        left += 1 if state[1, t] > state[3, t] else 0
    return left


@njit(**JIT)
def _invert_(out, lam, u, idx, count, state):
    """Inversion for the ``count`` pixels ``idx`` (means below 10) over at most 24 terms: every
    pixel gets :data:`FIRST_TERMS`, the undecided ones :data:`STAGE_TERMS` more at a time, each
    stage a vectorised loop over a shorter list. ``out[p]`` the count, -2 past 24 terms."""
    _gather_(state[0], lam, idx, count)
    _gather_(state[1], u, idx, count)
    _invert_first_(count, state)
    count = _settle_(out, idx, count, state)
    for first in range(FIRST_TERMS, INVERSION_TERMS, STAGE_TERMS):
        if count == 0:
            return
        _invert_more_(count, state, first)
        count = _settle_(out, idx, count, state)
    for t in range(count):
        out[idx[t]] = -2.0


@njit(**JIT)
def _ptrs_first_(out, lam, u, v, idx, count, state):
    """PTRS's first attempt for the ``count`` pixels ``idx`` (means >= 10): their values made
    contiguous in ``state``, one vectorised loop, then scattered: ``out[p]`` the count, or -1
    where the attempt was rejected."""
    _gather_(state[0], lam, idx, count)
    _gather_(state[1], u, idx, count)
    _gather_(state[2], v, idx, count)
    _ptrs_attempts_(state, count)
    for t in range(count):
        out[idx[t]] = state[3, t]


@njit(**JIT)
def _ptrs_attempts_(state, count):
    """One PTRS attempt for the first ``count`` columns of ``state`` (lam, u, v): the count, or
    -1 where rejected, into ``state[3]``."""
    for t in range(count):
        k, accepted = _ptrs_attempt(state[0, t], state[1, t] - 0.5, state[2, t])
        state[3, t] = k if accepted else -1.0


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
def _list_words_(state, idx, count, attempt, lo, hi, k0, k1):
    """Attempt ``attempt``'s uniforms of the pixels ``idx`` into ``state[1]`` and ``state[2]``."""
    for t in range(count):
        r0, r1, r2, r3 = _philox(U64(idx[t]), U64(attempt), lo, hi, k0, k1)
        state[1, t] = _unit_double(r0, r1)
        state[2, t] = _unit_double(r2, r3)


@njit(**JIT)
def _keep_rejected_(out, idx, count, state):
    """Write the attempt's counts ``state[3]`` to ``out``; keep the rejected pixels (-1) and their
    means ``state[0]`` compacted at the front, without branches: how many are kept."""
    left = 0
    for t in range(count):
        out[idx[t]] = state[3, t]
        idx[left], state[0, left] = idx[t], state[0, t]
        left += 1 if state[3, t] == -1.0 else 0
    return left


@njit(**JIT)
def _finish_ptrs_(out, lam, lo, hi, k0, k1, idx, state):
    """Pixels whose first PTRS attempt was rejected (``out == -1``): attempts 1, 2, ... over the
    shrinking list ``idx`` of those still undecided, each attempt vectorised loops over ``state``."""
    count = 0
    for p in range(out.shape[0]):
        if out[p] == -1.0:
            idx[count] = p
            count += 1
    _gather_(state[0], lam, idx, count)
    for attempt in range(1, MAX_ATTEMPTS):
        if count == 0:
            return
        _list_words_(state, idx, count, attempt, lo, hi, k0, k1)
        _ptrs_attempts_(state, count)
        count = _keep_rejected_(out, idx, count, state)
    for t in range(count):  # never seen: each attempt accepts about 0.9
        out[idx[t]] = math.floor(state[0, t] + 0.5)


@njit(**JIT)
def _poisson_row_(out, lam, lo, hi, k0, k1, state, lists):
    """``out`` (P,) float64: keyed Poisson counts of ``lam`` (P,) float64 >= 0 for one sample;
    ``state`` (7, P) float64 and ``lists`` (2, P) int64 are work arrays."""
    u, v = state[5], state[6]
    _words_(u, v, lo, hi, k0, k1)
    n_small, n_large = _split_(lam, lists[0], lists[1])
    _invert_(out, lam, u, lists[0], n_small, state)
    _ptrs_first_(out, lam, u, v, lists[1], n_large, state)
    _finish_ptrs_(out, lam, lo, hi, k0, k1, lists[1], state)
    for p in range(out.shape[0]):
        if out[p] == -2.0:  # an inversion past 24 terms (about 1e-4 of the pixels at a mean of 10)
            out[p] = _poisson_one(lam[p], p, lo, hi, k0, k1)


@njit(**JIT)
def poisson_rows(out, lam, lo, hi, k0, k1):
    """Keyed Poisson counts ``out`` (B, P) float64 of means ``lam`` (B, P) float64 >= 0."""
    state, lists = np.empty((7, out.shape[1])), np.empty((2, out.shape[1]), np.int64)
    for b in range(out.shape[0]):
        _poisson_row_(out[b], lam[b], U64(lo[b]), U64(hi[b]), U64(k0), U64(k1), state, lists)


@njit(**JIT)
def detect_rows(out, intensity, lo, hi, shot_key, read_key, photoelectrons, read_std, adc_fraction, scratch):
    """A camera's frames: ``out`` (B, P) real from ``intensity`` (B, P) real:
    ``e = Poisson(QE N I) + read_std n`` clipped at 0, the ADC over the frame's peak, ``e / QE N``.

    ``shot_key``/``read_key`` (2,) uint32, ``photoelectrons`` ``QE N`` (finite), ``read_std``
    electrons (0: none), ``adc_fraction`` ``f`` (0: no ADC), ``scratch`` (P,) float32."""
    dt = out.dtype.type
    counts = np.empty(out.shape[1], np.float64)
    lam = np.empty(out.shape[1], np.float64)
    state, lists = np.empty((7, out.shape[1])), np.empty((2, out.shape[1]), np.int64)
    for b in range(out.shape[0]):
        slo, shi = U64(lo[b]), U64(hi[b])
        for p in range(out.shape[1]):
            lam[p] = max(np.float64(intensity[b, p]) * photoelectrons, 0.0)
        _poisson_row_(counts, lam, slo, shi, U64(shot_key[0]), U64(shot_key[1]), state, lists)
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
