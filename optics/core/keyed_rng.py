"""Counter-based keyed random numbers: the camera noise streams, in array code (NumPy or CuPy).

Every noise value is a pure function of its key and its counter (Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3", SC 2011), so a sample's noise never depends on which
batch, shard or worker drew it:

- **key** ``(k0, k1)`` (two uint32): :func:`noise_key` of (chip seed, round, pass, tap), through
  NumPy's ``SeedSequence`` (well mixed, stable across NumPy versions);
- **counter** ``(c0, c1, c2, c3)``: ``c0`` the block of four values within the sample's stream,
  ``c1`` the lane (0 for normals, the attempt for Poisson counts), ``(c2, c3)`` the sample id's low
  and high 32 bits;
- **bits**: Philox4x32-10, four uint32 per counter;
- **normals** (Box-Muller, float32): from ``(r0, r1)``, ``u = (float32(r0) + 1/2) 2^-32`` in
  ``(0, 1]`` and an angle ``q pi/2 + t`` (quadrant ``q = r1 >> 30``, ``t`` uniform in
  ``(-pi/4, pi/4)`` from 24 bits), the pair ``sqrt(-2 ln u) (cos, sin)``; likewise from
  ``(r2, r3)``. Block ``c0 = j`` gives the sample's values ``4j .. 4j+3``. ``ln`` and ``cos``/
  ``sin`` are written out as polynomials in float32 (:func:`box_muller`), so this module, the
  compiled CPU kernels (:mod:`optics.core.noise_kernels`) and the CUDA kernels
  (:mod:`optics.core.cuda_kernels`) compute the same bits with IEEE single arithmetic
  (no fused multiply-add). Tails reach ``sqrt(2 ln 2^33) = 6.8`` standard deviations;
- **Poisson counts** (float64): inversion for ``lam < 10`` and Hormann's transformed rejection
  with squeeze (PTRS, Insurance: Mathematics and Economics 12, 39, 1993) above; attempt ``a`` of
  pixel ``p`` uses counter ``(p, a, c2, c3)`` and two 53-bit uniforms from its four words.

This module is the reference: the NumPy fallback where Numba is missing, and the oracle the
kernels are tested against.
"""

from __future__ import annotations

import math

import numpy as np

from optics.core.backend import array_namespace

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
#: Poisson means below this are drawn by inversion, the rest by PTRS
POISSON_INVERSION_MAX = 10.0
POISSON_MAX_ATTEMPTS = 64
#: ``ln k!`` for k < 16 (exact to double precision); Stirling's series above (:func:`log_factorial`)
LOG_FACTORIALS = np.array([math.lgamma(k + 1.0) for k in range(16)])
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: ``1 / k`` (k = 1..1000; entry 0 unused): inversion's ``p_k = p_(k-1) (lam (1 / k))``
INVERSE_K = np.concatenate([[0.0], 1.0 / np.arange(1, 1001)])

F32 = np.float32
SQRT2 = F32(math.sqrt(2.0))
LN2 = F32(math.log(2.0))
ANGLE_STEP = F32(math.pi / 2 * 2.0**-24)
QUARTER_PI = F32(math.pi / 4)
# 2 atanh(s) = ln((1 + s) / (1 - s)): 2 s (1 + s^2/3 + s^4/5 + s^6/7 + s^8/9), |s| <= 0.172
LOG_COEFFS = tuple(F32(1.0 / k) for k in (3, 5, 7, 9))
SIN_COEFFS = tuple(F32(c) for c in (-1 / 6, 1 / 120, -1 / 5040, 1 / 362880))
COS_COEFFS = tuple(F32(c) for c in (-1 / 2, 1 / 24, -1 / 720, 1 / 40320))


def noise_key(seed: int, round_: int, pass_id: int, tap: int) -> tuple[int, int]:
    """``(k0, k1)``: the Philox key of one (chip seed, round, pass, tap) stream."""
    words = np.random.SeedSequence([int(seed), int(round_), int(pass_id), int(tap)]).generate_state(2, np.uint32)
    return int(words[0]), int(words[1])


def philox4x32(c0, c1, c2, c3, key: tuple[int, int]):
    """Philox4x32-10 of uint32 counter arrays (broadcast together) under ``key``: four uint32 arrays
    on the array module of ``c0``."""
    xp = array_namespace(c0)
    u32, u64 = xp.uint32, xp.uint64
    c = [xp.asarray(v, dtype=u32) for v in (c0, c1, c2, c3)]
    c = list(xp.broadcast_arrays(*c))
    k0, k1 = int(key[0]), int(key[1])
    for _ in range(PHILOX_ROUNDS):
        p0 = c[0].astype(u64) * u64(PHILOX_M0)
        p1 = c[2].astype(u64) * u64(PHILOX_M1)
        hi0, lo0 = (p0 >> u64(32)).astype(u32), p0.astype(u32)
        hi1, lo1 = (p1 >> u64(32)).astype(u32), p1.astype(u32)
        c = [hi1 ^ c[1] ^ u32(k0), lo1, hi0 ^ c[3] ^ u32(k1), lo0]
        k0, k1 = (k0 + PHILOX_W0) & 0xFFFFFFFF, (k1 + PHILOX_W1) & 0xFFFFFFFF
    return tuple(c)


def log_unit(radius_bits):
    """``ln u``, ``u = (float32(w) + 1/2) 2^-32`` (float32) of uint32 ``w``: exponent and a polynomial."""
    xp = array_namespace(radius_bits)
    f = radius_bits.astype(F32) + F32(0.5)
    bits = f.view(xp.uint32)
    exponent = (bits >> xp.uint32(23)).astype(xp.int32) - 127
    m = ((bits & xp.uint32(0x7FFFFF)) | xp.uint32(0x3F800000)).view(F32)
    big = m > SQRT2
    m = xp.where(big, m * F32(0.5), m)
    exponent = exponent + big.astype(xp.int32)
    s = (m - F32(1)) / (m + F32(1))
    z = s * s
    c3, c5, c7, c9 = LOG_COEFFS
    poly = F32(1) + z * (c3 + z * (c5 + z * (c7 + z * c9)))
    return (exponent - 32).astype(F32) * LN2 + (s + s) * poly


def unit_circle(angle_bits):
    """``(cos a, sin a)`` (float32) of the angle ``q pi/2 + t`` of uint32 ``w``: ``q = w >> 30``,
    ``t = (((w >> 6) & (2^24 - 1)) + 1/2) pi/2 2^-24 - pi/4``, sine and cosine polynomials on ``|t| < pi/4``."""
    xp = array_namespace(angle_bits)
    q = angle_bits >> xp.uint32(30)
    t = ((angle_bits >> xp.uint32(6)) & xp.uint32(0xFFFFFF)).astype(F32)
    t = (t + F32(0.5)) * ANGLE_STEP - QUARTER_PI
    z = t * t
    s1, s2, s3, s4 = SIN_COEFFS
    k1, k2, k3, k4 = COS_COEFFS
    sin_t = t + t * z * (s1 + z * (s2 + z * (s3 + z * s4)))
    cos_t = F32(1) + z * (k1 + z * (k2 + z * (k3 + z * k4)))
    swap = (q & xp.uint32(1)) == 1
    x = xp.where(swap, sin_t, cos_t)
    y = xp.where(swap, cos_t, sin_t)
    x = xp.where(((q + xp.uint32(1)) >> xp.uint32(1)) & xp.uint32(1) == 1, -x, x)
    y = xp.where(q >= 2, -y, y)
    return x, y


def box_muller(radius_bits, angle_bits):
    """Two independent standard normals (float32) from two uint32 words (module docstring)."""
    xp = array_namespace(radius_bits)
    r = xp.sqrt(F32(-2) * log_unit(radius_bits))
    x, y = unit_circle(angle_bits)
    return r * x, r * y


def split_sample(samples):
    """``(low, high)`` uint32 words of non-negative int64 sample ids."""
    s = np.asarray(samples, dtype=np.int64)
    if s.size and s.min() < 0:
        raise ValueError(f"sample ids must be >= 0, got {int(s.min())}")
    u = s.astype(np.uint64)
    return (u & np.uint64(0xFFFFFFFF)).astype(np.uint32), (u >> np.uint64(32)).astype(np.uint32)


def normals(key: tuple[int, int], samples, count: int, xp=np):
    """Standard normals (B, count) float32: row ``b`` is sample ``samples[b]``'s stream."""
    lo, hi = split_sample(samples)
    return normals_words(key, xp.asarray(lo), xp.asarray(hi), count)


def normals_words(key: tuple[int, int], lo, hi, count: int):
    """:func:`normals` of the samples' ``(lo, hi)`` uint32 words (B,), on their array module."""
    xp = array_namespace(lo)
    blocks = xp.arange((count + 3) // 4, dtype=xp.uint32)[None, :]
    r0, r1, r2, r3 = philox4x32(blocks, xp.uint32(0), lo[:, None], hi[:, None], key)
    a0, a1 = box_muller(r0, r1)
    b0, b1 = box_muller(r2, r3)
    out = xp.stack([a0, a1, b0, b1], axis=-1).reshape(len(lo), -1)
    return out[:, :count]


def quantise_rows_(rows, adc_fraction) -> None:
    """The ADC on (B, K) real rows in place: ``rint(x (1 / step)) step``, ``step = max(peak, 1e-30) f``,
    ``peak = max |x|`` per row, ``f = adc_fraction`` (a scalar of the rows' dtype)."""
    xp, dt = array_namespace(rows), rows.dtype.type
    step = xp.maximum(xp.abs(rows).max(axis=1), dt(1e-30)) * adc_fraction
    inverse = (dt(1) / step)[:, None]
    rows[...] = xp.rint(rows * inverse) * step[:, None]


def measure_rows_(pairs, lo, hi, key: tuple[int, int], gains, adc_fraction, rotation) -> None:
    """Holographic taps in place (array code; :func:`optics.core.noise_kernels.measure_rows` compiled):
    ``pairs`` (B, K) real ``(re, im)`` rows, ``gains`` (B, 2) per-quadrature noise std (a row of
    zeros draws none), ``adc_fraction`` (0: no ADC), ``rotation`` (B, 2) ``(cos, sin)`` or (0, 2)."""
    xp, dt = array_namespace(pairs), pairs.dtype.type
    b_count, count = pairs.shape
    pairs3 = pairs.reshape(b_count, count // 2, 2)
    noisy = xp.flatnonzero((gains != 0).any(axis=1))
    if len(noisy):
        noise = normals_words(key, lo[noisy], hi[noisy], count).astype(dt).reshape(len(noisy), count // 2, 2)
        pairs3[noisy] = pairs3[noisy] + gains[noisy][:, None, :] * noise
    if adc_fraction > 0:
        quantise_rows_(pairs, adc_fraction)
    if rotation.shape[0]:
        re, im = pairs3[..., 0].copy(), pairs3[..., 1].copy()
        c, s = rotation[:, 0:1], rotation[:, 1:2]
        pairs3[..., 0] = re * c - im * s
        pairs3[..., 1] = re * s + im * c


def detect_rows(intensity, lo, hi, shot_key, read_key, photoelectrons: float, read_std, adc_fraction):
    """A camera's frames (B, P) in the dtype of ``intensity`` (B, P) (NumPy;
    :func:`optics.core.noise_kernels.detect_rows` compiled): ``e = Poisson(QE N I) + read_std n``,
    clipped at 0, the ADC, then ``e / QE N``."""
    dt = intensity.dtype.type
    lam = np.maximum(intensity.astype(np.float64) * photoelectrons, 0.0)
    e = poisson_words(shot_key, lo, hi, lam).astype(dt)
    if read_std > 0:
        e = e + read_std * normals_words(read_key, lo, hi, lam.shape[1]).astype(dt)
    e = np.maximum(e, dt(0))
    if adc_fraction > 0:
        quantise_rows_(e, adc_fraction)
    return e / dt(photoelectrons)


def unit_double(hi_word, lo_word):
    """A float64 uniform in (0, 1) from two uint32 words: ``((hi >> 5) 2^26 + (lo >> 6) + 1/2) 2^-53``."""
    xp = array_namespace(hi_word)
    k = (hi_word >> xp.uint32(5)).astype(xp.float64) * 67108864.0 + (lo_word >> xp.uint32(6)).astype(xp.float64)
    return (k + 0.5) * 2.0**-53


def poisson(key: tuple[int, int], samples, lam: np.ndarray) -> np.ndarray:
    """Poisson counts (B, P) float64 of means ``lam`` (B, P) float64 >= 0 (NumPy; the reference)."""
    lo, hi = split_sample(samples)
    return poisson_words(key, lo, hi, lam)


def poisson_words(key: tuple[int, int], lo, hi, lam: np.ndarray) -> np.ndarray:
    """:func:`poisson` of the samples' ``(lo, hi)`` uint32 words (B,)."""
    lam = np.asarray(lam, dtype=np.float64)
    pixels = np.broadcast_to(np.arange(lam.shape[1], dtype=np.uint32)[None, :], lam.shape)
    lo, hi = np.broadcast_to(np.asarray(lo)[:, None], lam.shape), np.broadcast_to(np.asarray(hi)[:, None], lam.shape)
    out = np.zeros(lam.shape, np.float64)
    small = lam < POISSON_INVERSION_MAX
    out[small] = _poisson_inversion(lam[small], pixels[small], lo[small], hi[small], key)
    out[~small] = _poisson_ptrs(lam[~small], pixels[~small], lo[~small], hi[~small], key)
    return out


def _poisson_inversion(lam, pixels, lo, hi, key):
    """Inversion by sequential search (one uniform, attempt 0's first): ``k`` = the first with
    ``F(k) >= u``, ``F(k) = F(k - 1) + p_k``, ``p_k = p_(k-1) (lam (1 / k))``, ``k <= 1000``."""
    r0, r1, _, _ = philox4x32(pixels, np.uint32(0), lo, hi, key)
    u = unit_double(r0, r1)
    p = np.exp(-lam)
    cdf, k = p.copy(), np.zeros(lam.shape, np.int64)
    active = u > cdf
    while active.any():
        k[active] += 1
        p[active] = p[active] * (lam[active] * INVERSE_K[k[active]])
        cdf[active] = cdf[active] + p[active]
        active &= (u > cdf) & (k < len(INVERSE_K) - 1)
    return k.astype(np.float64)


def log_factorial(k):
    """``ln k!`` of integer-valued float64 ``k >= 0``: a table below 16, else Stirling's series in
    ``x = k + 1``, ``(x - 1/2) ln x - x + ln(2 pi)/2 + 1/(12 x) - 1/(360 x^3) + 1/(1260 x^5)``
    (next term ``< 2e-12``)."""
    k = np.asarray(k, dtype=np.float64)
    x = k + 1.0
    inv2 = 1.0 / (x * x)
    series = (x - 0.5) * np.log(x) - x + HALF_LOG_2PI + (1.0 / 12.0 - (1.0 / 360.0 - inv2 / 1260.0) * inv2) / x
    small = k < len(LOG_FACTORIALS)
    return np.where(small, LOG_FACTORIALS[np.where(small, k, 0).astype(np.int64)], series)


def ptrs_constants(lam):
    """``(b, a, inv_alpha, v_r)`` of PTRS for means ``lam`` >= 10."""
    slam = np.sqrt(lam) if isinstance(lam, np.ndarray) else math.sqrt(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    return b, a, 1.1239 + 1.1328 / (b - 3.4), 0.9277 - 3.6224 / (b - 2.0)


def _poisson_ptrs(lam, pixels, lo, hi, key):
    """Transformed rejection with squeeze; attempt ``a`` uses counter ``(pixel, a, lo, hi)``."""
    b, a, inv_alpha, v_r = ptrs_constants(lam)
    out = np.full(lam.shape, np.nan)
    todo = np.ones(lam.shape, bool)
    for attempt in range(POISSON_MAX_ATTEMPTS):
        if not todo.any():
            break
        idx = np.flatnonzero(todo)
        r0, r1, r2, r3 = philox4x32(pixels[idx], np.uint32(attempt), lo[idx], hi[idx], key)
        u = unit_double(r0, r1) - 0.5
        v = unit_double(r2, r3)
        us = 0.5 - np.abs(u)
        k = np.floor((2.0 * a[idx] / us + b[idx]) * u + lam[idx] + 0.43)
        accept = (us >= 0.07) & (v <= v_r[idx])
        test = ~accept & (k >= 0) & ~((us < 0.013) & (v > us))
        if test.any():
            t = idx[test]
            kt = k[test]
            lhs = np.log(v[test] * inv_alpha[t] / (a[t] / (us[test] * us[test]) + b[t]))
            accept[test] = lhs <= -lam[t] + kt * np.log(lam[t]) - log_factorial(kt)
        out[idx[accept]] = k[accept]
        todo[idx[accept]] = False
    if todo.any():  # never seen: the acceptance rate is about 0.9 per attempt
        out[todo] = np.floor(lam[todo] + 0.5)
    return out
