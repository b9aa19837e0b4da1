"""Detector regions: class scores from output intensity, and their transpose.

``s_c = sum over region D_c of I`` is a linear map ``s = M^T vec(I)`` with a 0/1 mask
matrix ``M`` of shape (n*n, C); its transpose ``dL/dI = M dL/ds`` spreads each class's
loss derivative over its region. With 0/1 regions of equal size (every layout here) both are
gathers and scatters of the regions' pixels instead of products with the dense ``M``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optics.core.backend import array_namespace


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


def region_pixels(det: Detectors):
    """(C, K) flat pixel indices of each class's region on the backend of ``det.masks``, when the
    masks are 0/1 regions of K pixels each (every camera layout here), else None. Cached."""
    cached = det.__dict__.get("_region_pixels", False)
    if cached is not False:
        return cached
    xp = array_namespace(det.masks)
    masks = np.asarray(det.masks.get() if hasattr(det.masks, "get") else det.masks)
    sizes = (masks != 0).sum(axis=0)
    regions = None
    if masks.ndim == 2 and np.isin(masks, (0, 1)).all() and sizes.size and (sizes == sizes[0]).all() and sizes[0] > 0:
        regions = xp.asarray(np.stack([np.flatnonzero(masks[:, c]) for c in range(masks.shape[1])]))
    det.__dict__["_region_pixels"] = regions
    return regions


def detector_scores(intensity, det: Detectors):
    """Class scores (B, C) = region sums of intensity (B, *plane): a gather of the regions'
    pixels (or the mask product ``vec(I) M`` for general masks)."""
    b = intensity.shape[0]
    flat = intensity.reshape(b, -1)
    regions = region_pixels(det)
    if regions is None:
        return flat @ det.masks
    return flat[:, regions].sum(axis=2, dtype=flat.dtype)


def scores_transpose(d_scores, det: Detectors):
    """``dL/dI`` (B, *plane) from ``dL/ds`` (B, C): the transpose of :func:`detector_scores`
    (each class's derivative written over its region, zero elsewhere)."""
    b = d_scores.shape[0]
    regions = region_pixels(det)
    if regions is None:
        return (d_scores @ det.masks.T).reshape((b,) + tuple(det.plane))
    xp = array_namespace(d_scores)
    out = xp.zeros((b, det.masks.shape[0]), dtype=xp.result_type(d_scores, det.masks))
    out[:, regions] = d_scores[:, :, None]
    return out.reshape((b,) + tuple(det.plane))
