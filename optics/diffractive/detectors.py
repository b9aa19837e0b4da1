"""Detector regions of a diffractive chip's camera plane (see :mod:`optics.core.detectors`)."""

from __future__ import annotations

import numpy as np

from optics.core.backend import Backend
from optics.core.detectors import Detectors
from optics.diffractive.geometry import Geometry, detector_corners


def make_detectors(geometry: Geometry, backend: Backend) -> Detectors:
    """Square regions of ``geometry.detector_px`` pixels laid out by :func:`detector_corners`.

    Mask matrix ``M`` (n*n, C): ``M[p, c] = 1`` for pixel p inside region c, so the class
    score ``s_c = sum_{p in D_c} I_p`` (fraction of the input power) is ``vec(I) M``.
    """
    n, d = geometry.n, geometry.detector_px
    corners = detector_corners(geometry)
    masks = np.zeros((n, n, len(corners)), dtype=np.float64)
    for c, (y, x) in enumerate(corners):
        masks[y : y + d, x : x + d, c] = 1.0
    return Detectors(n, d, corners, backend.asarray(masks.reshape(n * n, -1), backend.real_dtype))
