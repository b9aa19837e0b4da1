"""Non-line-of-sight (NLOS) imaging: hidden objects behind a scattering wall, one trainable mask.

Set-up (SI units; fields (B, n, n) complex on plane A, pitch ``pitch`` metres; the SLM is lit
with unit total power, so ``|y|^2`` is a fraction of the input photons per camera pixel)::

    laser -> SLM (phase phi, pixelwise) ==relay==> plane A -- objective -- scattering wall --
            object_distance_m -- hidden object O (amplitude reflectance in [0, 1]) -- back the same way
                                                 |  beam splitter
                                               camera (images plane A, holographic)

Operators (``docs/design.md`` section 1 notation; ``K``, ``G``, ``P`` as in
:mod:`optics.scattering.medium`)::

    u = a * U exp(i phi)                 the trainable mask (a = 1/n; U: segments onto pixels)
    O_b = diag(o_b)                      sample b's hidden scene (one or more objects)
    reflection   (default):  y_b = M_b u,   M_b = K G^T P(d_o) O_b P(d_o) G K
    transmission (control):  y_b = M_b u,   M_b = K P(d_o) O_b P(d_o) G K

**Why the reflection arrangement is symmetric.** Light crosses the wall, meets the hidden
object and returns through the same wall: by reciprocity the return trip is ``G^T``, ``O_b``
is diagonal and ``P(d_o) = P(d_o)^T`` (even transfer function), so
``M_b^T = K^T G^T P^T O_b P^T G K^T = M_b`` for any wall and any scene. FFM's error pass, the
error field ``e_b = (dL/dI_b) conj(y_b)`` sent into plane A through the same optics with the
same scene in place, is then exactly the reverse-mode pass ``M_b^T e_b``. In the control the
light crosses the wall once (``G`` without ``G^T``), ``M_b^T != M_b`` and the forward-only
gradient is biased. Gradient with respect to mask segment ``j`` (radians^-1)::

    dL/dphi_j = -2 Im( sum_b sum_{p in segment j} u_p eps_bp ),    eps_b = M_b e_b (measured)

**Scenes.** The paper's protocol (Xue et al. 2024, Fig. 4): a square object of ``object_px``
pixels moved over a 3 x 3 grid (centres ``spacing_px`` apart around the cell centre); the
mask is trained on the nine single-object scenes and tested on scenes of 5 and 7 objects
("parallel imaging"). Ground truth on the camera is the scene's reflectance map ``|o_b|^2``
in plane-A pixel coordinates. Hidden digits: an 8 x 8 scikit-learn digit (values in
[0, 1]) upsampled to ``object_px`` at the centre position.

Noise is the camera's (:mod:`optics.core.measurement`), keyed by (seed, round, pass, sample,
tap): the mask tap is tap 0, the camera field ``Tap.DETECTOR``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from optics.core.backend import Backend
from optics.core.camera import Camera
from optics.core.measurement import MeasurementSpec, PassKey, Tap
from optics.core.propagation import make_propagator, propagate, propagate_transpose
from optics.core.taps import Taps
from optics.core.validate import check_choice, check_positive
from optics.scattering.medium import MediumSpec, ScatteringMedium

NLOS_GEOMETRIES = ("reflection", "transmission")
GRID = 3  # the paper's 3 x 3 object positions


def default_wall() -> MediumSpec:
    """The wall of the NLOS study: a pixelwise mask (segments = n), two 2 rad screens 2 px correlated."""
    return MediumSpec(n=64, segments=64, na=0.1, n_screens=2, screen_rms_rad=2.0, screen_corr_px=2.0)


@dataclass(frozen=True)
class NLOSSpec:
    """The wall (:class:`MediumSpec`), the hidden-object plane and the scene grid.

    ``object_distance_m`` from the wall's last screen to the object; ``object_px`` side of the
    square object (and of an upsampled digit); ``spacing_px`` between neighbouring grid
    centres; ``geometry`` reflection (symmetric) or transmission (control).
    """

    wall: MediumSpec = field(default_factory=default_wall)
    object_distance_m: float = 100e-6
    object_px: int = 8
    spacing_px: int = 16
    geometry: str = "reflection"

    def __post_init__(self) -> None:
        check_positive("object_distance_m", self.object_distance_m)
        check_choice("geometry", self.geometry, NLOS_GEOMETRIES)
        n = self.wall.n
        for name in ("object_px", "spacing_px"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer of pixels, got {getattr(self, name)}")
        if self.spacing_px < self.object_px:
            raise ValueError(f"spacing_px={self.spacing_px} must be >= object_px={self.object_px} (objects overlap)")
        if (GRID - 1) * self.spacing_px + self.object_px > n:
            raise ValueError(
                f"the 3 x 3 grid (2 x spacing_px + object_px = {2 * self.spacing_px + self.object_px} px) "
                f"does not fit the {n} x {n} grid; lower spacing_px or object_px"
            )

    def corners(self) -> np.ndarray:
        """Top-left pixel (row, col) of each of the 9 positions (9, 2), row-major."""
        c0 = (self.wall.n - (GRID - 1) * self.spacing_px - self.object_px) // 2
        rows, cols = np.divmod(np.arange(GRID * GRID), GRID)
        return np.stack([c0 + rows * self.spacing_px, c0 + cols * self.spacing_px], axis=1)


def square_scenes(spec: NLOSSpec, positions) -> np.ndarray:
    """Reflectance maps (B, n, n) float64 of square objects; ``positions`` a list of index lists (0..8)."""
    n, s, corners = spec.wall.n, spec.object_px, spec.corners()
    out = np.zeros((len(positions), n, n))
    for b, pos in enumerate(positions):
        for k in pos:
            if not 0 <= int(k) < GRID * GRID:
                raise ValueError(f"positions must lie in 0..8, got {k}")
            r, c = corners[int(k)]
            out[b, r : r + s, c : c + s] = 1.0
    return out


def digit_scenes(spec: NLOSSpec, images: np.ndarray, position: int = 4) -> np.ndarray:
    """Reflectance maps (B, n, n) of digits (B, 8, 8) in [0, 1], nearest-upsampled to ``object_px``."""
    images = np.asarray(images, dtype=np.float64)
    s = spec.object_px
    idx = (np.arange(s) * images.shape[-1]) // s
    big = images[:, idx][:, :, idx]
    out = np.zeros((len(images), spec.wall.n, spec.wall.n))
    r, c = spec.corners()[position]
    out[:, r : r + s, c : c + s] = big
    return out


def random_scenes(count: int, objects: int, seed: int) -> list[list[int]]:
    """``count`` distinct-position scenes of ``objects`` squares each (seeded), as index lists."""
    if not 1 <= objects <= GRID * GRID:
        raise ValueError(f"objects must be 1..9, got {objects}")
    rng = np.random.default_rng([int(seed), 0x2105, objects])
    return [sorted(rng.choice(GRID * GRID, objects, replace=False).tolist()) for _ in range(int(count))]


class HiddenScene:
    """A hidden wall (drawn from ``seed``) with the object plane behind it (see module doc)."""

    def __init__(
        self,
        spec: NLOSSpec | None = None,
        seed: int = 0,
        measurement: MeasurementSpec | None = None,
        backend: Backend | None = None,
    ):
        self.spec = spec or NLOSSpec()
        self.seed = int(seed)
        self.wall = ScatteringMedium(self.spec.wall, seed, measurement, backend)
        self.backend, self.measurement = self.wall.backend, self.wall.measurement
        w = self.spec.wall
        self._object_hop = make_propagator(
            self.backend, w.n, w.pitch, w.wavelength, self.spec.object_distance_m, n_pad=w.n
        )

    # -- exact linear optics ---------------------------------------------------------------
    def around_object(self, field, objects, transpose: bool = False):
        """``P(d_o) O P(d_o) v`` or its transpose ``P^T O P^T v`` (objects (B, n, n) real)."""
        hop = propagate_transpose if transpose else propagate
        return hop(hop(field, self._object_hop) * self._objects(objects), self._object_hop)

    def apply(self, field, objects, transpose: bool = False):
        """``M_b u_b`` (or ``M_b^T u_b``) for fields (B, n, n) and scenes (B, n, n) (module doc).

        Built operator by operator from the transposes of ``K``, ``G`` and ``P``, so that
        ``apply(., True) == apply(.)`` in reflection is a check, not an assumption.
        """
        w, pupil = self.wall, self.wall._pupil
        hop = propagate_transpose if transpose else propagate
        if self.spec.geometry == "reflection":  # M = K G^T P O P G K;  M^T: each operator transposed
            back = self.around_object(w.medium(hop(field, pupil)), objects, transpose)
            return hop(w.medium(back, transpose=True), pupil)
        if transpose:  # transmission: M^T = K^T G^T P^T O P^T K^T
            return hop(w.medium(self.around_object(hop(field, pupil), objects, True), transpose=True), pupil)
        return hop(self.around_object(w.medium(hop(field, pupil)), objects), pupil)  # M = K P O P G K

    def _objects(self, objects):
        n = self.spec.wall.n
        o = self.backend.asarray(objects, dtype=self.backend.real_dtype)
        if o.ndim != 3 or o.shape[-2:] != (n, n):
            raise ValueError(f"objects has shape {tuple(o.shape)}, expected (batch, {n}, {n}) reflectances")
        return o

    def slm_field(self, phases, batch: int):
        """``u = a U exp(i phi)`` for one mask (S, S) radians, repeated over ``batch`` scenes."""
        u = self.wall.slm_field(phases)
        return self.backend.xp.repeat(u, batch, axis=0) if u.shape[0] == 1 else u

    # -- passes as the hardware runs them ------------------------------------------------
    def true_data_pass(self, phases, objects) -> Taps:
        """Noise-free data pass of one mask over scenes (B, n, n): taps ``u``, ``y``, ``|y|^2`` (oracle)."""
        u = self.slm_field(phases, len(objects))
        y = self.apply(u, objects)
        return Taps(u[None], y, (y * y.conj()).real)

    @property
    def camera(self) -> Camera:
        return Camera(self.measurement, self.seed, self.backend)

    def data_pass(self, phases, objects, key: PassKey) -> Taps:
        """Measured data pass: ``u`` and ``y`` holographically, ``|y|^2`` on the camera."""
        taps = self.true_data_pass(phases, objects)
        measured = [(taps.fields[0], 0), (taps.output, Tap.DETECTOR)]
        return Taps(taps.fields, taps.output, self.camera.data_pass_taps(key, measured, taps.intensity))

    def error_pass(self, error, objects, key: PassKey) -> Taps:
        """Forward-only error pass: ``e`` into plane A through the same optics and scene, ``eps = M e`` measured."""
        e = self.wall._checked_error(error)
        eps = self.apply(e, objects)[None]
        self.camera.error_pass_taps(key, e, [(eps[0], 0)])
        return Taps(eps)

    def true_error_pass(self, error, objects) -> Taps:
        """Exact reverse-mode pass ``M^T e`` (oracle; equals the forward-only pass in reflection)."""
        return Taps(self.apply(self.wall._checked_error(error), objects, transpose=True)[None])

    def frames(self, phases, objects, key: PassKey):
        """Camera intensity frames (B, n, n) of one mask over scenes: one frame per scene."""
        return self.camera.detected(key, self.true_data_pass(phases, objects).intensity)

    def reveal(self) -> dict[str, np.ndarray]:
        """The hidden wall's screens (for analysis only, never for training)."""
        return self.wall.reveal()

    def describe(self) -> dict:
        s = self.spec
        return self.wall.describe() | {
            "kind": "nlos",
            "nlos_geometry": s.geometry,
            "object_distance_m": s.object_distance_m,
            "object_px": s.object_px,
            "spacing_px": s.spacing_px,
        }
