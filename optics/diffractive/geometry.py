"""Geometry of a diffractive chip: grid, wavelength, plane spacing, layers, detectors.

All lengths in metres, pixel counts as integers. ``Geometry.reference()`` is the widely
used benchmark of ``docs/design.md`` section 2 (200 x 200 px, 36 um, 532 nm, 5 layers,
0.3 m, 10 detectors of 20 x 20 px); ``Geometry.small()`` is a 64 x 64, 3-layer chip for
tests and CI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optics.core.validate import check_positive


@dataclass(frozen=True)
class Geometry:
    """A diffractive network: input plane, ``n_layers`` modulation planes, detector plane.

    Planes are ``distance`` metres apart (``n_layers + 1`` gaps). ``pad`` is the zero
    padding per side in pixels for every propagation (None: automatic, see
    :func:`optics.core.propagation.choose_padded_size`). ``object_px`` is the side of the
    amplitude-encoded input image, ``detector_px`` the side of each square detector.
    """

    n: int = 200
    pitch: float = 36e-6
    wavelength: float = 532e-9
    distance: float = 0.3
    n_layers: int = 5
    n_classes: int = 10
    detector_px: int = 20
    object_px: int = 96
    pad: int | None = None
    force_padding: bool = False

    def __post_init__(self) -> None:
        for name in ("pitch", "wavelength", "distance"):
            check_positive(name, getattr(self, name))
        for name in ("n", "n_layers", "n_classes", "detector_px", "object_px"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.n < 8:
            raise ValueError(f"n must be >= 8 pixels, got {self.n}")
        if self.object_px > self.n:
            raise ValueError(f"object_px={self.object_px} does not fit the grid n={self.n}; use object_px <= n")
        rows = detector_rows(self.n_classes)
        span = (2 * max(rows) - 1) * self.detector_px
        if span > self.n or (2 * len(rows) - 1) * self.detector_px > self.n:
            raise ValueError(
                f"detector_px={self.detector_px} too large: {self.n_classes} detectors need "
                f"{span} px across but n={self.n}; use detector_px <= {self.n // (2 * max(rows) - 1)}"
            )

    @property
    def phase_shape(self) -> tuple[int, int, int]:
        """Shape of the trainable phases: (n_layers, n, n)."""
        return (self.n_layers, self.n, self.n)

    @classmethod
    def reference(cls, **overrides) -> Geometry:
        """The reference benchmark geometry (docs/design.md section 2)."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> Geometry:
        """A 64 x 64, 3-layer chip (36 um, 532 nm, 5 cm) for tests and CI."""
        base = dict(n=64, distance=0.05, n_layers=3, detector_px=6, object_px=32)
        base.update(overrides)
        return cls(**base)


def detector_rows(n_classes: int) -> list[int]:
    """Detectors per row, middle rows fuller: 10 -> [3, 4, 3], 4 -> [2, 2], 3 -> [1, 2]."""
    n_rows = max(1, round(math.sqrt(n_classes)))
    base, extra = divmod(n_classes, n_rows)
    rows = [base] * n_rows
    order = sorted(range(n_rows), key=lambda r: abs(r - (n_rows - 1) / 2))
    for r in order[:extra]:
        rows[r] += 1
    return rows


def detector_corners(geometry: Geometry) -> list[tuple[int, int]]:
    """Top-left (row, col) of each square detector, centred rows with one-detector gaps."""
    n, d = geometry.n, geometry.detector_px
    rows = detector_rows(geometry.n_classes)
    y0 = (n - (2 * len(rows) - 1) * d) // 2
    corners = []
    for r, count in enumerate(rows):
        x0 = (n - (2 * count - 1) * d) // 2
        corners.extend((y0 + 2 * r * d, x0 + 2 * c * d) for c in range(count))
    return corners
