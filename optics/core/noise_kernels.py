"""Compiled CPU kernels of the keyed camera noise (Numba): draw and apply it in one or two passes.

The arithmetic is that of :mod:`optics.core.keyed_rng` (Philox4x32-10, Box-Muller with float32
polynomials, inversion / PTRS Poisson), written per element so that LLVM vectorises it, with no
fast-math: IEEE single operations in the reference's order give the reference's bits (tested).
Every kernel works on rows (one sample each) and releases the GIL, so the backend's block
workers (:meth:`optics.core.backend.Backend.map_split`) draw their own samples side by side.

A holographic tap (:func:`measure_rows`) is two passes over each sample's ``(re, im)`` row
while it sits in the core's cache: (1) ``x + g_q n`` with the keyed normal ``n`` and the
quadrature's gain ``g_q`` (noise std times the sample's amplitude), keeping the peak ``|x|``;
(2) the ADC, ``rint(x / step) step`` with ``step = max(peak, 1e-30) f``, and the residual
reference phase, ``(re c - im s, re s + im c)``. A detected frame (:func:`detect_rows`): (1)
``e = Poisson(lam) + sigma_r n``, clipped at 0, keeping the peak; (2) the ADC and ``e / QE N``.

Imported lazily by :mod:`optics.core.measurement` (compiling takes a few seconds once per
machine: ``cache=True`` keeps the machine code beside this file or in Numba's user cache).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from optics.core import keyed_rng as ref

U64 = np.uint64
MASK32 = U64(0xFFFFFFFF)
SHIFT32 = U64(32)
M0, M1 = U64(ref.PHILOX_M0), U64(ref.PHILOX_M1)
W0, W1 = U64(ref.PHILOX_W0), U64(ref.PHILOX_W1)
F32 = np.float32
HALF, ONE, TWO_NEG = F32(0.5), F32(1.0), F32(-2.0)
SQRT2, LN2, ANGLE_STEP, QUARTER_PI = ref.SQRT2, ref.LN2, ref.ANGLE_STEP, ref.QUARTER_PI
L3, L5, L7, L9 = ref.LOG_COEFFS
S1, S2, S3, S4 = ref.SIN_COEFFS
C1, C2, C3, C4 = ref.COS_COEFFS
INV_MAX, MAX_ATTEMPTS = ref.POISSON_INVERSION_MAX, ref.POISSON_MAX_ATTEMPTS
LOG_FACTORIALS, HALF_LOG_2PI = ref.LOG_FACTORIALS, ref.HALF_LOG_2PI
JIT = dict(nogil=True, cache=True, error_model="numpy")


@intrinsic
def _f32_bits(typingctx, x):
    """The IEEE bits of a float32 as a uint32."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    """The float32 whose IEEE bits are the uint32 ``x``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@njit(inline="always", **JIT)
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10; uint64 arguments holding 32-bit words."""
    for _ in range(10):
        p0 = c0 * M0
        p1 = c2 * M1
        c0, c1, c2, c3 = (p1 >> SHIFT32) ^ c1 ^ k0, p1 & MASK32, (p0 >> SHIFT32) ^ c3 ^ k1, p0 & MASK32
        k0 = (k0 + W0) & MASK32
        k1 = (k1 + W1) & MASK32
    return c0, c1, c2, c3


@njit(inline="always", **JIT)
def _radius(w):
    """``sqrt(-2 ln u)``, ``u = (float32(w) + 1/2) 2^-32`` (:func:`optics.core.keyed_rng.log_unit`)."""
    bits = _f32_bits(F32(np.uint32(w)) + HALF)
    exponent = np.int32(bits >> np.uint32(23)) - np.int32(127)
    m = _bits_f32((bits & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000))
    if m > SQRT2:
        m = m * HALF
        exponent += np.int32(1)
    s = (m - ONE) / (m + ONE)
    z = s * s
    poly = ONE + z * (L3 + z * (L5 + z * (L7 + z * L9)))
    return np.sqrt(TWO_NEG * (F32(exponent - np.int32(32)) * LN2 + (s + s) * poly))


@njit(inline="always", **JIT)
def _circle(w):
    """``(cos a, sin a)`` of the angle of ``w`` (:func:`optics.core.keyed_rng.unit_circle`)."""
    q = w >> U64(30)
    t = (F32(np.uint32((w >> U64(6)) & U64(0xFFFFFF))) + HALF) * ANGLE_STEP - QUARTER_PI
    z = t * t
    sin_t = t + t * z * (S1 + z * (S2 + z * (S3 + z * S4)))
    cos_t = ONE + z * (C1 + z * (C2 + z * (C3 + z * C4)))
    x, y = (sin_t, cos_t) if q & U64(1) else (cos_t, sin_t)
    if ((q + U64(1)) >> U64(1)) & U64(1):
        x = -x
    if q >= U64(2):
        y = -y
    return x, y


@njit(inline="always", **JIT)
def _normal4(block, lane, lo, hi, k0, k1):
    """The four normals of counter ``(block, lane, lo, hi)``."""
    r0, r1, r2, r3 = _philox(U64(block), lane, lo, hi, k0, k1)
    a, b = _radius(r0), _radius(r2)
    x0, y0 = _circle(r1)
    x1, y1 = _circle(r3)
    return a * x0, a * y0, b * x1, b * y1


@njit(**JIT)
def _normals_row(out, lo, hi, k0, k1):
    """``out[:] =`` the row's keyed normals (float32)."""
    n = out.shape[0]
    full = n // 4
    for j in range(full):
        v0, v1, v2, v3 = _normal4(j, U64(0), lo, hi, k0, k1)
        out[4 * j] = v0
        out[4 * j + 1] = v1
        out[4 * j + 2] = v2
        out[4 * j + 3] = v3
    if n > 4 * full:
        v = _normal4(full, U64(0), lo, hi, k0, k1)
        for i in range(n - 4 * full):
            out[4 * full + i] = v[i]


@njit(**JIT)
def normals_rows(out, lo, hi, k0, k1):
    """Keyed standard normals: row ``b`` of ``out`` (B, K) float32 is sample ``(lo[b], hi[b])``'s stream."""
    for b in range(out.shape[0]):
        _normals_row(out[b], U64(lo[b]), U64(hi[b]), U64(k0), U64(k1))


@njit(**JIT)
def _add_noise_(row, lo, hi, k0, k1, g_re, g_im):
    """``row += g n`` with the row's keyed normals: even elements Re (gain ``g_re``), odd Im."""
    dt = row.dtype.type
    n = row.shape[0]
    full = n // 4
    for j in range(full):
        v0, v1, v2, v3 = _normal4(j, U64(0), lo, hi, k0, k1)
        row[4 * j] = row[4 * j] + g_re * dt(v0)
        row[4 * j + 1] = row[4 * j + 1] + g_im * dt(v1)
        row[4 * j + 2] = row[4 * j + 2] + g_re * dt(v2)
        row[4 * j + 3] = row[4 * j + 3] + g_im * dt(v3)
    if n > 4 * full:  # n is even: one more (re, im) pair
        v0, v1, _, _ = _normal4(full, U64(0), lo, hi, k0, k1)
        row[4 * full] = row[4 * full] + g_re * dt(v0)
        row[4 * full + 1] = row[4 * full + 1] + g_im * dt(v1)


@njit(**JIT)
def _peak(row):
    """``max |row|``, over 16 running maxima (a form LLVM vectorises; the maximum is exact in any order)."""
    dt = row.dtype.type
    lanes = np.zeros(16, row.dtype)
    full = row.shape[0] // 16
    for j in range(full):
        for lane in range(16):
            a = abs(row[16 * j + lane])
            lanes[lane] = a if a > lanes[lane] else lanes[lane]
    peak = dt(0)
    for lane in range(16):
        peak = max(peak, lanes[lane])
    for i in range(16 * full, row.shape[0]):
        peak = max(peak, abs(row[i]))
    return peak


@njit(**JIT)
def _quantise_(row, step):
    """``row = rint(row (1 / step)) step``: the ADC's levels of ``step``."""
    inverse = row.dtype.type(1) / step
    for i in range(row.shape[0]):
        row[i] = np.rint(row[i] * inverse) * step


@njit(**JIT)
def _quantise_rotate_(row, step, c, s):
    """The ADC (:func:`_quantise_`), then ``(re, im) = (re c - im s, re s + im c)`` over the pairs."""
    inverse = row.dtype.type(1) / step
    for i in range(row.shape[0] // 2):
        re = np.rint(row[2 * i] * inverse) * step
        im = np.rint(row[2 * i + 1] * inverse) * step
        row[2 * i] = re * c - im * s
        row[2 * i + 1] = re * s + im * c


@njit(**JIT)
def _rotate_(row, c, s):
    """``(re, im) = (re c - im s, re s + im c)`` over the row's pairs."""
    for i in range(row.shape[0] // 2):
        re, im = row[2 * i], row[2 * i + 1]
        row[2 * i] = re * c - im * s
        row[2 * i + 1] = re * s + im * c


@njit(**JIT)
def measure_rows(pairs, lo, hi, k0, k1, gains, adc_fraction, rotation):
    """Holographic taps in place: ``pairs`` (B, K) real ``(re, im)`` rows, K even (module docstring).

    ``gains`` (B, 2) per-quadrature noise std per sample (both 0: no noise drawn),
    ``adc_fraction`` ``f`` (0: no ADC), ``rotation`` (B, 2) ``(cos, sin)`` or (0, 2) for none;
    scalars in the rows' dtype."""
    dt = pairs.dtype.type
    for b in range(pairs.shape[0]):
        row = pairs[b]
        if gains[b, 0] != 0 or gains[b, 1] != 0:
            _add_noise_(row, U64(lo[b]), U64(hi[b]), U64(k0), U64(k1), gains[b, 0], gains[b, 1])
        step = max(_peak(row), dt(1e-30)) * adc_fraction if adc_fraction > 0 else dt(0)
        if rotation.shape[0] and adc_fraction > 0:
            _quantise_rotate_(row, step, rotation[b, 0], rotation[b, 1])
        elif rotation.shape[0]:
            _rotate_(row, rotation[b, 0], rotation[b, 1])
        elif adc_fraction > 0:
            _quantise_(row, step)
