"""The noise budget of holographic field measurement: phase steps and per-quadrature noise.

Convention (docs/design.md section 4.3): the SLM adds a phase step ``d_k`` to the signal
``E`` (complex, sqrt(photoelectrons) per pixel per frame), the reference ``R`` is fixed, and
frame ``k`` records::

    I_k = |E exp(i d_k) + R|^2 = a + 2 Re(C) cos d_k - 2 Im(C) sin d_k,   a = |E|^2 + |R|^2,  C = E conj(R)

Phase shifting solves these ``K`` equations per pixel for ``(a, Re C, Im C)`` by least
squares with the ``K x 3`` design matrix ``A_k = (1, 2 cos d_k, -2 sin d_k)``. With a strong
reference of ``R`` photoelectrons per pixel per frame and read noise ``r`` electrons rms,
every frame pixel has variance ``s^2 = R + r^2``, so ``Cov(a, Re C, Im C) = s^2 (A^T A)^-1``.

In normalised units (``sum_pixels |u|^2 = 1`` carries ``QE N`` photoelectrons over the whole
measurement, split equally over the ``K`` frames: ``E = u sqrt(QE N / K)``, ``u = C / (sqrt(R)
sqrt(QE N / K))``), the per-quadrature standard deviation of the recovered field is::

    std(Re u) = sqrt(K [(A^T A)^-1]_11) sqrt(1 + r^2 / R) / sqrt(QE N)
    std(Im u) = sqrt(K [(A^T A)^-1]_22) sqrt(1 + r^2 / R) / sqrt(QE N)

- 4-step ``(0, pi/2, pi, 3 pi/2)``: ``A^T A = diag(4, 8, 8)``, both factors ``sqrt(1/2)``
  (any ``K`` balanced steps give the same: the heterodyne limit);
- 3-step ``(0, pi/2, pi)`` (Xue et al. 2024's lab code): ``A^T A = [[3, 0, -2], [0, 8, 0],
  [-2, 0, 4]]``, ``[(A^T A)^-1]_11 = 1/8``, ``[(A^T A)^-1]_22 = 3/8``: factors ``sqrt(3/8)``
  (Re) and ``sqrt(9/8)`` (Im);
- off-axis (one frame, the whole budget, a tilted reference; Fourier filter a disc of area
  ``f`` as a fraction of the frequency cell of the grid ``u`` is normalised on): white frame
  noise keeps the fraction ``f`` of its variance and splits it equally over the two
  quadratures, factor ``sqrt(f / 2)``. :data:`OFF_AXIS_FILTER_FRACTION` (``pi / 2``) is the
  disc circumscribing the square band of a field sampled at its own grid (a camera that
  oversamples it ``m`` times sees a disc of area ``pi / (2 m^2)``: the same factor);
- homodyne: the ideal single-frame bound, each quadrature measured with the whole budget,
  factor ``1/2``.
"""

from __future__ import annotations

import enum
import functools
import math

import numpy as np

from optics.core.validate import check_choice, check_positive


class Scheme(enum.StrEnum):
    """Holographic schemes a camera can run (phase steps in :func:`phase_steps`)."""

    THREE_STEP = "3-step"
    FOUR_STEP = "4-step"
    OFF_AXIS = "off-axis"


#: The ideal single-frame homodyne bound: a noise model, not a camera scheme.
HOMODYNE = "homodyne"
#: Every scheme the noise model knows (``MeasurementSpec.holography``).
NOISE_SCHEMES = (HOMODYNE, *(s.value for s in Scheme))
#: Off-axis filter disc as a fraction of the field grid's frequency cell: the disc of radius
#: ``sqrt(2) / 2`` cycles per field pixel that passes the field's whole square band.
OFF_AXIS_FILTER_FRACTION = math.pi / 2

_STEPS = {
    Scheme.THREE_STEP: (0.0, math.pi / 2, math.pi),
    Scheme.FOUR_STEP: (0.0, math.pi / 2, math.pi, 3 * math.pi / 2),
    Scheme.OFF_AXIS: (0.0,),
}


def phase_steps(scheme: str) -> tuple[float, ...]:
    """The phase steps ``d_k`` (radians) the SLM adds to the signal, one per frame."""
    try:
        return _STEPS[Scheme(scheme)]
    except ValueError:
        raise ValueError(
            f"holography scheme must be one of {', '.join(s.value for s in Scheme)}; got {scheme!r}"
        ) from None


def design_matrix(steps) -> np.ndarray:
    """``A`` (K, 3), rows ``(1, 2 cos d_k, -2 sin d_k)``; ValueError for fewer than 3 or degenerate steps."""
    d = np.atleast_1d(np.asarray(steps, dtype=np.float64))
    if d.ndim != 1 or d.size < 3:
        raise ValueError(f"phase shifting needs >= 3 phase steps, got {tuple(d.ravel().tolist())}")
    design = np.stack([np.ones_like(d), 2 * np.cos(d), -2 * np.sin(d)], axis=1)
    if np.linalg.matrix_rank(design) < 3:
        raise ValueError(f"phase steps {tuple(d.tolist())} are degenerate: use at least 3 distinct steps mod 2 pi")
    return design


def phase_shifting_solver(steps) -> np.ndarray:
    """The (3, K) least-squares solver ``(A^T A)^-1 A^T`` of ``I_k = a + 2 Re(C) cos d_k - 2 Im(C) sin d_k``:
    applied to K frames it gives ``(a, Re C, Im C)``."""
    design = design_matrix(steps)
    return np.linalg.solve(design.T @ design, design.T)


@functools.lru_cache(maxsize=64)
def quadrature_factors(scheme: str, filter_fraction: float = OFF_AXIS_FILTER_FRACTION) -> tuple[float, float]:
    """``(k_re, k_im)``: the per-quadrature noise in units of ``sqrt(1 + r^2 / R) / sqrt(QE N)``
    (module docstring): homodyne (1/2, 1/2), 4-step (0.707, 0.707), 3-step (0.612, 1.061),
    off-axis ``sqrt(f / 2)`` each for a filter disc of area fraction ``f``."""
    check_choice("holography", scheme, NOISE_SCHEMES)
    if scheme == HOMODYNE:
        return 0.5, 0.5
    if scheme == Scheme.OFF_AXIS:
        k = math.sqrt(check_positive("filter_fraction (disc area / frequency cell)", filter_fraction) / 2)
        return k, k
    steps = phase_steps(scheme)
    design = design_matrix(steps)
    inverse_normal = np.linalg.inv(design.T @ design)
    return math.sqrt(len(steps) * inverse_normal[1, 1]), math.sqrt(len(steps) * inverse_normal[2, 2])


def quadrature_noise_std(
    scheme: str,
    photoelectrons: float,
    reference_e_per_px: float,
    read_noise_e: float,
    filter_fraction: float = OFF_AXIS_FILTER_FRACTION,
) -> tuple[float, float]:
    """``(std Re u, std Im u)`` of a field measured with ``scheme``, in normalised units::

        std = k_scheme sqrt(1 + r^2 / R) / sqrt(QE N)

    ``photoelectrons`` is ``QE N`` over the whole measurement (inf: no shot noise, (0, 0)),
    ``reference_e_per_px`` the reference ``R`` per pixel per frame (electrons),
    ``read_noise_e`` ``r`` (electrons rms); ``k_scheme`` from :func:`quadrature_factors`.
    Quadratures are taken relative to the reference's phase (those of ``C = E conj(R)``)."""
    k_re, k_im = quadrature_factors(scheme, filter_fraction)
    if math.isinf(photoelectrons):
        return 0.0, 0.0
    if not photoelectrons > 0:
        raise ValueError(f"photoelectrons (QE N) must be > 0, got {photoelectrons}")
    excess = math.sqrt(1.0 + read_noise_e**2 / max(reference_e_per_px, 1e-9))
    return k_re * excess / math.sqrt(photoelectrons), k_im * excess / math.sqrt(photoelectrons)
