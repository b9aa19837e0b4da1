"""Preflight of a diffractive chip, computed in the driver before any actor exists: each
chip's hidden plane spacings, the propagation grid they need, its aliasing guardrail and the
memory of one training round. Errors are ``ValueError`` with one line naming the key and
the fix (the caller raises them as configuration errors)."""

from __future__ import annotations

import warnings

import numpy as np

from optics.core.propagation import (
    SamplingWarning,
    band_limit,
    band_limit_loss,
    choose_padded_size,
    effective_spread_px,
    min_pad_px,
)
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import draw_hidden_state
from pipeline.chips.diffractive_cost import cost_notes

MAX_PADDED_PX = 16384  # a 16384^2 complex64 field is 2 GiB: beyond any chip's budget
GIB = 1024**3


def chip_bytes(g: Geometry, n_pad: int, batch: int, itemsize: int, threads: int) -> int:
    """Memory of one chip's training round, bytes: ``(L+1)`` transfer functions on the padded
    grid, the data and error taps of ``batch`` samples (``2 (L+1)`` fields of ``n^2`` each),
    and a padded workspace per FFT thread (with its plan buffers, about 4 fields)."""
    taps = 2 * (g.n_layers + 1) * batch * g.n * g.n
    return itemsize * ((g.n_layers + 1) * n_pad * n_pad + taps + 4 * threads * n_pad * n_pad)


def check_grid(spec, batch: int, memory_bytes: float | None) -> list[str]:
    """The chip's propagation grid and memory; returns its sampling warnings, the band limit's
    dropped power and (the xue2024 geometry) the projected cost as lines."""
    g = spec.geometry
    n_pad, caught = _padded_size(spec, g)
    if n_pad > MAX_PADDED_PX:
        raise ValueError(
            f"chip: the propagation grid would be {n_pad} x {n_pad} px (n={g.n}, distance="
            f"{g.distance:g} m, pitch={g.pitch:g} m); at most {MAX_PADDED_PX}: lower chip.distance "
            "or chip.n, or set chip.pad"
        )
    notes = [f"chip {spec.index}: {w.message}" for w in caught] + band_limit_notes(g, n_pad)  # grid checked first
    itemsize = 16 if spec.precision == "complex128" else 8
    need = chip_bytes(g, n_pad, spec.samples_per_pass or batch, itemsize, spec.fft_threads or 1)
    if memory_bytes and need > memory_bytes:
        raise ValueError(
            f"chip: one chip needs about {need / GIB:.1f} GiB (grid {n_pad}^2 px, "
            f"{spec.samples_per_pass or batch} samples per pass) but the cluster has "
            f"{memory_bytes / GIB:.1f} GiB; lower trainer.batch_size, set chip.samples_per_pass, "
            "or lower chip.n / chip.distance"
        )
    return notes + cost_notes(spec, n_pad)


def _padded_size(spec, g: Geometry) -> tuple[int, list]:
    """The chip's FFT grid over its longest hidden spacing, and the padding warnings."""
    try:
        hidden = draw_hidden_state(spec.hardware, g, spec.seed)
    except ValueError as exc:
        if "plane spacing" not in str(exc):
            raise ValueError(f"chip (chip {spec.index}, seed {spec.seed}): {exc}") from None
        raise ValueError(
            f"chip.hardware.distance_error_m={spec.hardware.distance_error_m:g} x chip.level="
            f"{spec.hardware.level:g} makes a plane spacing of chip {spec.index} (seed {spec.seed}) "
            f"<= 0 at chip.distance={g.distance:g} m; lower chip.level or "
            "chip.hardware.distance_error_m, or raise chip.distance"
        ) from None
    z = g.distance + float(np.abs(hidden.distances - g.distance).max())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        try:
            n_pad = choose_padded_size(g.n, g.pitch, g.wavelength, z, pad=g.pad, force=g.force_padding)
        except ValueError:
            spread = effective_spread_px(g.n + 2 * g.pad, g.pitch, g.wavelength, z)
            need = min_pad_px(g.n, g.pitch, g.wavelength, z)
            raise ValueError(
                f"chip.pad={g.pad} px per side aliases (light spreads {spread:.1f} px per side inside the "
                f"band limit over z={z:.3g} m, chip {spec.index}); use chip.pad >= {need}, or chip.pad=null "
                "for automatic padding"
            ) from None
    return n_pad, [w for w in caught if issubclass(w.category, SamplingWarning)]


def band_limit_notes(g: Geometry, n_pad: int) -> list[str]:
    """A note when the grid's band limit drops light the grid could carry: the band it keeps and
    the fraction of a flat spectrum's power (a pixel-random phase mask) it drops per hop."""
    f_lim, f_grid = band_limit(n_pad, g.pitch, g.wavelength, g.distance), 1.0 / (2.0 * g.pitch)
    if f_lim >= f_grid:
        return []
    lost = band_limit_loss(n_pad, g.pitch, g.wavelength, g.distance)
    return [
        f"the band limit of the {n_pad} x {n_pad} px grid keeps |fx|, |fy| <= {f_lim * 1e-3:.1f} cycles/mm of "
        f"the {f_grid * 1e-3:.1f} the {g.pitch * 1e6:g} um pitch carries: a field with a flat spectrum loses "
        f"{100 * lost:.1f}% of its power per hop (smooth fields far less; band-limited angular spectrum, "
        "docs/design.md section 2.2)"
    ]
