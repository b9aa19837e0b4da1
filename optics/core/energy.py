"""Optical energy per operation and projected hardware time (stated conventions, SI units).

**Operation count.** Free-space diffraction connects every pixel of a plane to every pixel
of the next, so each propagation is a dense complex matrix-vector product of size
``N^2 x N^2`` (``N`` pixels per side): ``N^4`` multiply-accumulates (MACs). We count
operations as 2 x MACs, as Taichi-II and most optical-neural-network papers do::

    ops_per_sample = 2 * (L + 1) * N^4        (L + 1 propagations; one complex MAC = 2 ops)

Counting real arithmetic instead (a complex MAC is 8 real operations) gives 4x more.
Modulation (``N^2`` per layer) and detection are negligible next to ``N^4``.

**Optical energy.** A sample carries ``photons_per_sample`` photons of energy ``h c / lambda``
(3.73e-19 J at 532 nm), so ``energy_per_op = photons * h c / lambda / ops_per_sample`` in J
and its inverse in operations per joule (= operations per second per watt). This counts
only the light; SLM, camera and laser wall-plug power are excluded, and we say so wherever
the number is shown. Taichi-II reports 5.4e18 operations per second per watt (system
level, Xue et al. 2024).

**Measurement model.** Under ``monitors`` (docs/design.md section 4) one laser shot of
``N`` photons serves every tap of a pass; under ``reload`` (a measure-and-reload rig) every
hop is its own shot with its own budget, so an inference spends ``N`` per measured hop
(``L + 1`` for a chip lit at its input plane, ``L`` for one fed by a relay):
:func:`photons_per_pass`.

**Projected hardware time of FFM training.** Per sample and step the hardware takes
``frames_per_sample`` camera frames (a measure-and-reload system: the L layer fields and the
output in the data pass, the L layer fields in the error pass: ``2 L + 1``), at
``camera_fps``; the SLMs are rewritten once per round (``slm_refresh_s``, all layers in
parallel). Taichi-II: 42 fps cameras, 17 ms SLM refresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optics.core.validate import check_positive

PLANCK = 6.62607015e-34  # J s
LIGHT_SPEED = 299792458.0  # m / s


def photon_energy(wavelength: float) -> float:
    """``h c / lambda`` in joules; ``wavelength`` in metres."""
    return PLANCK * LIGHT_SPEED / check_positive("wavelength", wavelength)


def ops_per_sample(n: int, n_layers: int) -> float:
    """``2 (L + 1) N^4``: operations of one inference (see the module docstring)."""
    if n < 1 or n_layers < 1:
        raise ValueError(f"n and n_layers must be >= 1, got n={n}, n_layers={n_layers}")
    return 2.0 * (n_layers + 1) * float(n) ** 4


def energy_per_op(photons_per_sample: float, wavelength: float, n: int, n_layers: int) -> float:
    """Optical energy per operation in joules (light only)."""
    if not math.isfinite(photons_per_sample) or photons_per_sample <= 0:
        raise ValueError(f"photons_per_sample must be a finite number > 0, got {photons_per_sample}")
    return photons_per_sample * photon_energy(wavelength) / ops_per_sample(n, n_layers)


def photons_per_pass(photons_per_shot: float, measured_hops: int, model: str = "monitors") -> float:
    """Photons one pass spends per sample: ``N`` (monitors) or ``N`` per measured hop (reload)."""
    if model not in ("monitors", "reload"):
        raise ValueError(f"model must be monitors or reload, got {model!r}")
    return photons_per_shot * (measured_hops if model == "reload" else 1)


def photons_per_detector_pixel(
    photons_per_sample: float, detected_fraction: float, detector_pixels: int, quantum_efficiency: float = 1.0
) -> float:
    """Mean photons (``quantum_efficiency`` < 1: photoelectrons) per detector pixel of one sample."""
    check_positive("detector_pixels", detector_pixels)
    return photons_per_sample * detected_fraction * quantum_efficiency / detector_pixels


@dataclass(frozen=True)
class HardwareClock:
    """Frame and SLM rates of a free-space FFM setup (defaults: Taichi-II's, docs/design.md section 2)."""

    camera_fps: float = 42.0
    slm_refresh_s: float = 0.017

    def __post_init__(self) -> None:
        check_positive("camera_fps", self.camera_fps)
        check_positive("slm_refresh_s", self.slm_refresh_s)

    def training_seconds(self, samples: int, rounds: int, n_layers: int) -> float:
        """Projected wall time of FFM training: ``samples (2 L + 1) / fps + rounds t_SLM``."""
        return samples * (2 * n_layers + 1) / self.camera_fps + rounds * self.slm_refresh_s
