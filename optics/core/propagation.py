"""Band-limited angular-spectrum propagation and its transpose.

Operator, for a field ``u`` on an ``n x n`` grid of pitch ``dx`` (metres)::

    P u = crop( IFFT( H * FFT( pad(u) ) ) )
    H(fx, fy) = exp(i 2 pi z sqrt(1/lambda^2 - fx^2 - fy^2))   propagating, |fx|,|fy| <= f_lim
              = 0                                            evanescent or outside the band limit
    f_lim = 1 / (lambda sqrt((2 z df)^2 + 1)),  df = 1 / (n_pad dx)

(Matsushima and Shimobaba, Opt. Express 17, 19662, 2009.) ``pad`` embeds the field in
the centre of an ``n_pad x n_pad`` zero grid and ``crop`` is exactly its transpose. The
DFT matrix is symmetric, so ``P^T = crop IFFT(H(-f) FFT(pad u))``: with ``H`` even in
``f`` (ideal free space) ``P = P^T`` exactly, which is what FFM relies on. A lateral
registration shift ``s`` (metres) of the next plane's frame multiplies ``H`` by
``exp(-i 2 pi f.s)`` and a tilt ``theta`` (radians) of the optical axis evaluates
``H`` at ``f - sin(theta)/lambda``; both make ``H`` odd-ish and ``P != P^T``.

The transfer function is built in float64 (``kz z`` reaches ~3.5e6 rad at 0.3 m) and
cast to the backend dtype; the inverse FFT's ``1/n_pad^2`` is folded into it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from optics.core.backend import Backend
from optics.core.validate import check_finite, check_positive

SPREAD_TOL_PX = 1e-6  # float rounding of a spread that is exactly n_pad / 2


class SamplingWarning(UserWarning):
    """Padding is marginal for the light's lateral spread: expect a few % wrap-around."""


def spread_px(pitch: float, wavelength: float, distance: float) -> float:
    """Lateral spread per side in pixels, ``s = z tan(asin(lambda / (2 dx))) / dx``."""
    sin_max = min(wavelength / (2.0 * pitch), 1.0 - 1e-9)
    return abs(distance) * math.tan(math.asin(sin_max)) / pitch


def band_limit(n_pad: int, pitch: float, wavelength: float, distance: float) -> float:
    """The band limit ``f_lim = 1 / (lambda sqrt((2 z df)^2 + 1))``, cycles per metre, ``df = 1 / (n_pad dx)``."""
    df = 1.0 / (n_pad * pitch)
    return 1.0 / (wavelength * math.sqrt((2.0 * abs(distance) * df) ** 2 + 1.0))


def band_limited_spread_px(n_pad: int, pitch: float, wavelength: float, distance: float) -> float:
    """Lateral spread per side in pixels of the light the band-limited transfer function keeps.

    The steepest kept direction has ``sin(theta) = lambda min(f_lim, 1 / (2 dx))``; where the band
    limit binds, ``z tan(theta) = 1 / (2 df)``, so the spread is ``n_pad / 2`` pixels whatever
    ``z``: a grid of ``2 n`` (``pad = n / 2``) never wraps the kept light onto the aperture."""
    sin_max = min(wavelength * band_limit(n_pad, pitch, wavelength, distance), wavelength / (2.0 * pitch), 1.0 - 1e-9)
    return abs(distance) * math.tan(math.asin(sin_max)) / pitch


def band_limit_loss(n_pad: int, pitch: float, wavelength: float, distance: float, field=None) -> float:
    """Fraction of the power the band limit drops in one hop.

    ``field`` None: for a field with a flat spectrum on the padded grid (a pixel-random phase
    mask), the fraction of propagating frequency cells outside ``|fx|, |fy| <= f_lim``. Given
    fields (..., n, n) (NumPy), the fraction of their padded spectrum's power outside it."""
    f = np.fft.fftfreq(n_pad, d=pitch)
    f_lim = band_limit(n_pad, pitch, wavelength, distance)
    propagating = (f[:, None] ** 2 + f[None, :] ** 2) < 1.0 / wavelength**2
    keep = propagating & (np.abs(f[:, None]) <= f_lim) & (np.abs(f[None, :]) <= f_lim)
    if field is None:
        return float(1.0 - keep.sum() / max(int(propagating.sum()), 1))
    u = np.asarray(field)
    n = u.shape[-1]
    o = (n_pad - n) // 2
    padded = np.zeros(u.shape[:-2] + (n_pad, n_pad), dtype=np.complex128)
    padded[..., o : o + n, o : o + n] = u
    power = np.abs(np.fft.fft2(padded)) ** 2
    total = float(power.sum())
    return float(power[..., ~keep].sum() / total) if total > 0 else 0.0


def next_fast_len(target: int) -> int:
    """Smallest 11-smooth integer (factors 2, 3, 5, 7, 11) ``>= target``: the sizes FFTW, pocketfft
    and cuFFT have fast kernels for (``scipy.fft.next_fast_len(target, real=False)``, without SciPy)."""
    if target <= 6:
        return max(int(target), 1)
    best = 2 ** math.ceil(math.log2(target))
    p11 = 1
    while p11 < best:
        p7 = p11
        while p7 < best:
            p5 = p7
            while p5 < best:
                p3 = p5
                while p3 < best:
                    m = p3
                    while m < target:  # the power of two that lifts p3 to >= target
                        m *= 2
                    best = min(best, m)
                    p3 *= 3
                p5 *= 5
            p7 *= 7
        p11 *= 11
    return best


def choose_padded_size(
    n: int, pitch: float, wavelength: float, distance: float, pad: int | None = None, force: bool = False
) -> int:
    """FFT grid size for a propagation: automatic, or ``n + 2 pad`` when ``pad`` is given.

    Automatic: the next FFT-friendly size ``>= n + s`` (``s/2`` per side) with ``s`` the full
    bandwidth's spread (:func:`spread_px`). A given ``pad`` (pixels per side) is judged by the
    spread of the light the band limit of its own grid keeps (:func:`effective_spread_px`):
    below ``s/2`` it warns (:class:`SamplingWarning`); below ``s/4`` the output wraps around
    and is refused unless ``force=True``.
    """
    if pad is None:
        return next_fast_len(int(math.ceil(n + spread_px(pitch, wavelength, distance))))
    if pad < 0:
        raise ValueError(f"pad must be >= 0 pixels per side, got {pad}; or leave it unset for automatic")
    s = effective_spread_px(n + 2 * pad, pitch, wavelength, distance)
    if pad < s / 4 - SPREAD_TOL_PX and not force:
        raise ValueError(
            f"pad={pad} px per side aliases: light spreads {s:.1f} px per side over "
            f"z={distance:g} m inside the band limit; use pad >= {min_pad_px(n, pitch, wavelength, distance)} "
            f"(or pad=None for automatic, or force=True to accept wrap-around)"
        )
    if pad < s / 2 - SPREAD_TOL_PX:
        warnings.warn(
            f"pad={pad} px per side is marginal (spread {s:.1f} px per side inside the band limit); "
            f"pad >= {min_pad_px(n, pitch, wavelength, distance)} avoids wrap-around",
            SamplingWarning,
            stacklevel=3,
        )
    return n + 2 * pad


def effective_spread_px(n_pad: int, pitch: float, wavelength: float, distance: float) -> float:
    """Spread per side of the light a grid of ``n_pad`` keeps: the full bandwidth's
    (:func:`spread_px`) or the band limit's (:func:`band_limited_spread_px`), whichever is smaller."""
    full = spread_px(pitch, wavelength, distance)
    return min(full, band_limited_spread_px(n_pad, pitch, wavelength, distance))


def min_pad_px(n: int, pitch: float, wavelength: float, distance: float) -> int:
    """The smallest padding per side that keeps the spread inside the band limit from wrapping,
    ``pad >= s(n + 2 pad) / 2`` (at most the full bandwidth's ``ceil(s / 2)``)."""
    need = math.ceil(spread_px(pitch, wavelength, distance) / 2)
    lo = 0
    while lo < need:  # s grows with the grid, pad - s/2 too: bisect on the monotone condition
        mid = (lo + need) // 2
        if mid >= effective_spread_px(n + 2 * mid, pitch, wavelength, distance) / 2 - SPREAD_TOL_PX:
            need = mid
        else:
            lo = mid + 1
    return need


def transfer_function(
    n_pad: int,
    pitch: float,
    wavelength: float,
    distance: float,
    shift_m: tuple[float, float] = (0.0, 0.0),
    tilt_rad: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Band-limited ASM transfer function on the unshifted FFT grid, complex128, unscaled.

    ``shift_m`` = (sy, sx) frame registration shift, ``tilt_rad`` = (ty, tx) axis tilt.
    """
    f = np.fft.fftfreq(n_pad, d=pitch)  # 1/m, exact +-pairs so H(-f) is a reflection
    fy = f[:, None] - math.sin(tilt_rad[0]) / wavelength
    fx = f[None, :] - math.sin(tilt_rad[1]) / wavelength
    df = 1.0 / (n_pad * pitch)
    f_lim = 1.0 / (wavelength * math.sqrt((2.0 * distance * df) ** 2 + 1.0))
    arg = 1.0 / wavelength**2 - fx**2 - fy**2
    keep = (arg > 0) & (np.abs(fx) <= f_lim) & (np.abs(fy) <= f_lim)
    phase = 2.0 * math.pi * distance * np.sqrt(np.where(keep, arg, 0.0))
    if shift_m != (0.0, 0.0):
        phase = phase - 2.0 * math.pi * (f[:, None] * shift_m[0] + f[None, :] * shift_m[1])
    return np.where(keep, np.exp(1j * phase), 0.0)


def reflect_frequencies(h):
    """``H(-f)`` on the FFT grid: index ``k -> (-k) mod n`` along both axes."""
    return h[..., (-np.arange(h.shape[-2])) % h.shape[-2], :][..., (-np.arange(h.shape[-1])) % h.shape[-1]]


@dataclass(eq=False)
class Propagator:
    """A precomputed propagation between two planes of ``n x n`` pixels.

    ``kernel`` and ``kernel_t`` are ``H(f)/n_pad^2`` and ``H(-f)/n_pad^2`` on the
    backend, in its complex dtype.
    """

    backend: Backend
    n: int
    n_pad: int
    kernel: object
    kernel_t: object
    symmetric: bool


def make_propagator(
    backend: Backend,
    n: int,
    pitch: float,
    wavelength: float,
    distance: float,
    pad: int | None = None,
    n_pad: int | None = None,
    force: bool = False,
    shift_m: tuple[float, float] = (0.0, 0.0),
    tilt_rad: tuple[float, float] = (0.0, 0.0),
) -> Propagator:
    """Build a :class:`Propagator` (see module docstring); ``distance`` may be 0 (identity)."""
    check_positive("pitch", pitch)
    check_positive("wavelength", wavelength)
    if not math.isfinite(distance) or distance < 0:
        raise ValueError(f"distance must be a finite value >= 0 metres, got {distance}")
    if int(n) < 2:
        raise ValueError(f"n must be >= 2 pixels, got {n}")
    if n_pad is None:
        n_pad = choose_padded_size(n, pitch, wavelength, distance, pad, force)
    elif n_pad < n:
        raise ValueError(f"n_pad={n_pad} is smaller than the grid n={n}; use n_pad >= n")
    h = transfer_function(n_pad, pitch, wavelength, distance, shift_m, tilt_rad)
    h_t = reflect_frequencies(h)
    scale = 1.0 / (n_pad * n_pad)
    symmetric = bool(np.array_equal(h, h_t))
    cdt = backend.complex_dtype
    kernel = backend.asarray(np.ascontiguousarray(h * scale), cdt)
    # C order matters: multiplying a C-ordered field by a kernel in another order ran 5x slower
    kernel_t = kernel if symmetric else backend.asarray(np.ascontiguousarray(h_t * scale), cdt)
    return Propagator(backend, int(n), int(n_pad), kernel, kernel_t, symmetric)


def propagate(field, prop: Propagator):
    """``P u`` for fields of shape (..., n, n); returns a new array."""
    return _apply(field, prop, prop.kernel)


def propagate_transpose(field, prop: Propagator):
    """``P^T u`` (the reciprocal reverse path; equals ``P u`` for ideal free space)."""
    return _apply(field, prop, prop.kernel_t)


def _apply(field, prop: Propagator, kernel):
    n = prop.n
    if field.shape[-2:] != (n, n):
        raise ValueError(f"field has shape {tuple(field.shape)}, expected (..., {n}, {n}) for this propagator")
    lead = field.shape[:-2]
    flat = field.reshape((-1, n, n))
    out = prop.backend.xp.empty(flat.shape, dtype=prop.backend.complex_dtype)

    def run(block, worker):
        out[block] = hop(flat[block], prop, kernel, worker=worker)

    prop.backend.map_blocks(run, flat.shape[0], prop.n_pad)
    return out.reshape(lead + (n, n))


def hop(field, prop: Propagator, kernel, mult=None, store=None, worker: int | None = None):
    """``crop IFFT(kernel FFT(pad(field * mult)))`` for (B, n, n) fields, without copies.

    Returns a *view* into the backend's workspace for (B, n_pad, n_pad): valid until the
    next transform of that shape, so copy out what you keep. ``mult`` (n, n) multiplies the
    field on the way in (a layer's transmission), fused with loading the workspace; with
    ``store`` (B, n, n) the product ``field * mult`` is also written there (the data-pass
    tap). ``field`` may be the view a previous ``hop`` returned. ``worker`` names the block
    worker of :meth:`Backend.map_blocks` running this hop (its own workspace and plans).
    """
    n, n_pad, be = prop.n, prop.n_pad, prop.backend
    xp = be.xp
    buf = be.workspace((field.shape[0], n_pad, n_pad), worker)
    o = (n_pad - n) // 2
    centre = buf[:, o : o + n, o : o + n] if n_pad > n else buf
    if be.name == "cupy":
        be.load_(buf, field, o, mult, store)
        be.propagate_(buf, kernel)
        return centre
    if mult is None:
        if not _same_view(field, centre):
            centre[...] = field
    elif store is not None:
        xp.multiply(field, mult, out=store)
        centre[...] = store
    else:
        xp.multiply(field, mult, out=centre)
    if n_pad > n:  # zero only the border (the light spread there by the previous hop)
        buf[:, :o, :] = 0
        buf[:, o + n :, :] = 0
        buf[:, o : o + n, :o] = 0
        buf[:, o : o + n, o + n :] = 0
    be.propagate_(buf, kernel)
    return centre


def _same_view(a, b) -> bool:
    """True when ``a`` and ``b`` are the same elements of memory (NumPy arrays)."""
    return a is b or (
        a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def check_field(name: str, field, n: int) -> None:
    """One-line errors for a field with the wrong trailing shape or NaN/inf values."""
    if field.ndim < 2 or field.shape[-2:] != (n, n):
        raise ValueError(f"{name} has shape {tuple(field.shape)}, expected (batch, {n}, {n})")
    check_finite(name, field)
