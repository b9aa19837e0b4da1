"""The Clements mesh's layout and its fabrication errors (used by :mod:`optics.mesh.mzi`).

Couplers ``K(kappa) = [[cos kappa, i sin kappa], [i sin kappa, cos kappa]]``, one MZI
``K(kb) diag(e^{i theta}, 1) K(ka) diag(e^{i phi}, 1)``, the layer form
``A = P_L T_L ... P_1 T_1 P_0`` of an N-mode Clements mesh (``L = 2N + 1``), and the hidden
errors of one fabricated mesh (sources in :mod:`optics.mesh.mzi`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from optics.core.validate import check_nonnegative

ARRANGEMENTS = ("double", "single")
MAX_MODES = 128  # keeps 4N + 2 tap ids of one pass below the mesh's named tap ids (measurement.Tap, 998+)


def coupler(kappa: float) -> np.ndarray:
    """Directional coupler ``[[cos k, i sin k], [i sin k, cos k]]`` (2, 2); k = pi/4 is 50:50."""
    c, s = math.cos(kappa), math.sin(kappa)
    return np.array([[c, 1j * s], [1j * s, c]])


def mzi(theta: float, phi: float, kappa_a: float = math.pi / 4, kappa_b: float = math.pi / 4) -> np.ndarray:
    """One MZI, ``K(kb) diag(e^{i theta}, 1) K(ka) diag(e^{i phi}, 1)`` (2, 2); unitary for any kappas."""
    return coupler(kappa_b) @ np.diag([np.exp(1j * theta), 1]) @ coupler(kappa_a) @ np.diag([np.exp(1j * phi), 1])


def coupler_column(n: int, start: int, kappas: np.ndarray) -> np.ndarray:
    """(n, n) matrix of couplers on modes (j, j+1), j = start, start+2, ..., with angle ``kappas[j]``."""
    out = np.eye(n, dtype=np.complex128)
    for j in range(start, n - 1, 2):
        out[j : j + 2, j : j + 2] = coupler(float(kappas[j]))
    return out


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``, or a one-line ``ValueError`` naming ``name``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok or (isinstance(value, (float, np.floating)) and float(value).is_integer())
    if not ok or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def check_modes(n_modes) -> int:
    return check_int("n_modes", n_modes, 2, MAX_MODES)


@dataclass(frozen=True)
class MeshLayout:
    """The Clements layout of ``n_modes``: layers, shifter positions, coupler columns."""

    n_modes: int

    def __post_init__(self) -> None:
        check_modes(self.n_modes)

    @property
    def n_layers(self) -> int:
        return 2 * self.n_modes + 1

    def shifter_mask(self) -> np.ndarray:
        """(L, N) bool: True where a physical phase shifter sits (N^2 of them)."""
        n = self.n_modes
        mask = np.zeros((self.n_layers, n), dtype=bool)
        for k in range(n):
            mask[2 * k : 2 * k + 2, k % 2 : n - 1 : 2] = True
        mask[-1] = True
        return mask

    def propagations(self, kappas: np.ndarray) -> list[np.ndarray]:
        """``P_0 .. P_L`` (L + 1 complex128 (N, N)); ``kappas`` (N, N - 1, 2): column, top mode, a/b."""
        n = self.n_modes
        a = [coupler_column(n, k % 2, kappas[k, :, 0]) for k in range(n)]
        b = [coupler_column(n, k % 2, kappas[k, :, 1]) for k in range(n)]
        props = [np.eye(n, dtype=np.complex128)]
        for k in range(n):
            props += [a[k], b[k]]
        return props + [np.eye(n, dtype=np.complex128)]

    def ideal_kappas(self) -> np.ndarray:
        return np.full((self.n_modes, self.n_modes - 1, 2), math.pi / 4)

    def neighbours(self) -> np.ndarray:
        """(L, N, N) 0/1: shifters next to each other in the same layer (thermal crosstalk pairs)."""
        mask, out = self.shifter_mask(), np.zeros((self.n_layers, self.n_modes, self.n_modes))
        for layer in range(self.n_layers):
            pos = np.flatnonzero(mask[layer])
            out[layer, pos[1:], pos[:-1]] = out[layer, pos[:-1], pos[1:]] = 1.0
        return out


@dataclass(frozen=True)
class MeshErrors:
    """Fabrication error knobs at level 1 (each scaled by ``level``; sources in the module docstring)."""

    level: float = 1.0
    coupler_angle_rad: float = 0.05  # rms error of each coupler's angle around pi/4
    phase_offset_rad: float = 0.1  # rms static phase per waveguide segment and mirror port
    crosstalk: float = 0.02  # fraction of a neighbouring shifter's phase picked up
    loss_db: float = 0.1  # mean loss per waveguide segment per layer
    loss_spread_db: float = 0.02  # its rms variation between segments

    def __post_init__(self) -> None:
        for f in fields(self):
            check_nonnegative(f.name, getattr(self, f.name))


@dataclass(frozen=True)
class MeshHidden:
    """One mesh's drawn errors (NumPy float64): coupler angles (N, N-1, 2), static phases (L, N),
    mirror phases (N,), segment amplitude transmissions (L, N), crosstalk fraction."""

    kappas: np.ndarray
    phase_offsets: np.ndarray
    mirror_phases: np.ndarray
    loss: np.ndarray
    crosstalk: float

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


def draw_mesh_errors(errors: MeshErrors, layout: MeshLayout, seed: int) -> MeshHidden:
    """Draw one mesh instance from ``seed`` (same seed, same mesh)."""
    rng = np.random.default_rng([int(seed), 0x3A1])
    lv, n, n_layers = errors.level, layout.n_modes, layout.n_layers
    kappas = layout.ideal_kappas() + lv * errors.coupler_angle_rad * rng.standard_normal((n, n - 1, 2))
    offsets = lv * errors.phase_offset_rad * rng.standard_normal((n_layers, n))
    mirror = lv * errors.phase_offset_rad * rng.standard_normal(n)
    loss_db = lv * (errors.loss_db + errors.loss_spread_db * rng.standard_normal((n_layers, n)))
    loss = 10.0 ** (-np.clip(loss_db, 0.0, None) / 20.0)
    return MeshHidden(kappas, offsets, mirror, loss, lv * errors.crosstalk)


@dataclass(frozen=True)
class MeshGeometry:
    """What sizes an MZI-mesh chip: modes, classes read out, arrangement (``double``/``single``)."""

    n_modes: int
    n_classes: int
    arrangement: str = "double"

    def __post_init__(self) -> None:
        check_modes(self.n_modes)
        check_int("n_classes", self.n_classes, 1, self.n_modes)
        if self.arrangement not in ARRANGEMENTS:
            raise ValueError(f"arrangement must be one of {ARRANGEMENTS}, got {self.arrangement!r}")

    @property
    def n_layers(self) -> int:
        return MeshLayout(self.n_modes).n_layers

    @property
    def phase_shape(self) -> tuple[int, int]:
        """Shape of the commanded phases: (n_layers, n_modes); non-shifter entries are ignored."""
        return (self.n_layers, self.n_modes)
