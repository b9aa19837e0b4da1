"""Geometry of a diffractive chip: grid, wavelength, plane spacing, layers, detectors.

All lengths in metres, pixel counts as integers. ``Geometry.reference()`` is the widely
used benchmark of ``docs/design.md`` section 2 (200 x 200 px, 36 um, 532 nm, 5 layers,
0.3 m, 10 detectors of 20 x 20 px); ``Geometry.small()`` is a 64 x 64, 3-layer chip for
tests and CI; ``Geometry.xue2024()`` is the deep network of Xue et al., Nature 632, 280 (2024)
(8 layers of 400 x 400 px, 8 um, 532 nm, 0.388 m, an 800 x 800 grid, their 10 detectors).

Detector layouts (``detector_layout``): ``rows`` (centred rows with one-detector gaps, middle
rows fuller; :func:`detector_rows`) or ``xue2024`` (the paper's 10 squares, at their pixel
positions on a 400 x 400 grid, scaled by ``n / 400``).
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
    detector_layout: str = "rows"  # rows | xue2024 (DETECTOR_LAYOUTS)

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
        if self.detector_layout not in DETECTOR_LAYOUTS:
            layouts = ", ".join(DETECTOR_LAYOUTS)
            raise ValueError(f"detector_layout must be one of {layouts}, got {self.detector_layout!r}")
        if self.detector_layout == "xue2024":
            _check_fixed_layout(self)
            return
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

    @classmethod
    def xue2024(cls, **overrides) -> Geometry:
        """Xue et al. 2024's deep network (their code's ``Fig2``): 8 phase layers of 400 x 400 px,
        8 um pitch, 532 nm, 0.388 m between planes, an 800 x 800 grid (``pad = n / 2``), the
        28 x 28 images upsampled to 392 px, 10 detectors of 40 x 40 px at their positions.
        A smaller ``n`` scales the object, the detectors and the padding with it."""
        n = int(overrides.pop("n", 400))
        base = dict(
            n=n,
            pitch=8e-6,
            distance=0.388,
            n_layers=8,
            detector_px=max(1, round(40 * n / 400)),
            object_px=max(1, round(392 * n / 400)),
            pad=n // 2,
            detector_layout="xue2024",
        )
        base.update(overrides)
        return cls(**base)


# the paper's detector squares, top-left (row, col) on its 400 x 400 grid (40 x 40 px each)
XUE2024_CORNERS = (
    (92, 92),
    (92, 186),
    (92, 280),
    (170, 92),
    (170, 156),
    (170, 218),
    (170, 280),
    (250, 92),
    (250, 186),
    (250, 280),
)
DETECTOR_LAYOUTS = ("rows", "xue2024")


def _check_fixed_layout(g: Geometry) -> None:
    """A fixed layout: its number of detectors, each inside the grid, none overlapping."""
    if g.n_classes != len(XUE2024_CORNERS):
        raise ValueError(
            f"detector_layout=xue2024 has {len(XUE2024_CORNERS)} detectors but the task has {g.n_classes} "
            "classes; use detector_layout=rows"
        )
    corners, d = detector_corners(g), g.detector_px
    if max(max(y, x) for y, x in corners) + d > g.n:
        raise ValueError(f"detector_px={d} does not fit the xue2024 layout on n={g.n}; use detector_px <= {g.n // 10}")
    for i, (y0, x0) in enumerate(corners):
        for y1, x1 in corners[i + 1 :]:
            if abs(y0 - y1) < d and abs(x0 - x1) < d:
                raise ValueError(f"detector_px={d} makes the xue2024 detectors overlap on n={g.n}; lower detector_px")


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
    """Top-left (row, col) of each square detector: centred rows with one-detector gaps, or the
    ``xue2024`` positions scaled to the grid (``round(c n / 400)``)."""
    n, d = geometry.n, geometry.detector_px
    if geometry.detector_layout == "xue2024":
        return [(round(y * n / 400), round(x * n / 400)) for y, x in XUE2024_CORNERS]
    rows = detector_rows(geometry.n_classes)
    y0 = (n - (2 * len(rows) - 1) * d) // 2
    corners = []
    for r, count in enumerate(rows):
        x0 = (n - (2 * count - 1) * d) // 2
        corners.extend((y0 + 2 * r * d, x0 + 2 * c * d) for c in range(count))
    return corners
