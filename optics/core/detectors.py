"""Detector regions: class scores from output intensity, and their transpose.

``s_c = sum over region D_c of I`` is a linear map ``s = M^T vec(I)`` with a 0/1 mask
matrix ``M`` of shape (n*n, C); its transpose ``dL/dI = M dL/ds`` spreads each class's
loss derivative over its region. Both are single matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Detectors:
    """Mask matrix ``masks`` (n*n, C) on the backend, real dtype, plus the region corners.

    ``plane`` is the shape of one detected frame: (n, n) for a camera (a diffractive chip's, from
    :func:`optics.diffractive.detectors.make_detectors`); other chips (an
    MZI mesh's (N,) output modes) build ``Detectors`` with their own plane and masks.
    """

    n: int
    size: int
    corners: list
    masks: object
    plane: tuple = ()

    def __post_init__(self) -> None:
        if not self.plane:
            self.plane = (self.n, self.n)

    def region_image(self) -> np.ndarray:
        """(n, n) int image: class index inside each region, -1 elsewhere (for plots)."""
        img = -np.ones((self.n, self.n), dtype=np.int64)
        for c, (y, x) in enumerate(self.corners):
            img[y : y + self.size, x : x + self.size] = c
        return img


def detector_scores(intensity, det: Detectors):
    """Class scores (B, C) = region sums of intensity (B, *plane)."""
    b = intensity.shape[0]
    return intensity.reshape(b, -1) @ det.masks


def scores_transpose(d_scores, det: Detectors):
    """``dL/dI`` (B, *plane) from ``dL/ds`` (B, C): the transpose of :func:`detector_scores`."""
    b = d_scores.shape[0]
    return (d_scores @ det.masks.T).reshape((b,) + tuple(det.plane))
