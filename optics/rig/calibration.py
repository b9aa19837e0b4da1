"""A rig's calibrations: explicit steps, each returning what it measured and its frame cost.

All of them use the rig's own shots (:meth:`optics.rig.chip.RigChip.cross`) and, where a
prediction is needed, the ideal twin's free space ``P`` (never the hidden optics):

- **reference**: the amplitude SLM dark, the camera sees the reference alone: ``|R|^2`` per
  pixel per second of exposure (averaged frames).
- **exposure**: a plane wave (loader amplitude 1) at the current exposure; the exposure is
  scaled so its brightest interferogram pixel sits at ``target`` of the full scale (room
  for the light a trained network focuses; a shot that still saturates is retaken darker).
- **throughput**: the plane wave's measured power against the twin's ``sum |P 1|^2``:
  ``K = sum |C|^2 / |R|^2 / (t sum |P 1|^2)`` counts per second per unit loaded power;
  its ``C`` is kept as the reference of the drift.
- **drift** (every ``drift_every_batches`` batches, Xue et al. 2024 every batch): the same
  probe again; ``Delta = -arg sum C_now conj(C_first)`` is the reference phase moved since.
- **registration**: random amplitude probes ``f``; the measured field carried back to the SLM
  plane with the twin's free space, where its amplitude is ``|f|`` whatever phase screen the
  SLM has; the shift of ``|P^* E|^2`` against ``f^2`` is the slope of their cross-power phase
  (:func:`optics.diffractive.calibration.subpixel_shift`), averaged over the probes.
- **response**: uniform design phases ``p_k``; ``arg sum C_k conj(C_0)`` is the realised
  phase; a fit of ``2 pi (p / 2 pi)^gamma`` gives ``gamma``, inverted on every later write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optics.core.propagation import propagate, spread_px
from optics.diffractive.calibration import subpixel_shift

EXPOSURE_TARGET = 0.3  # brightest plane-wave pixel, as a fraction of full scale
REFERENCE_FRAMES = 4
RESPONSE_LEVELS = 8


@dataclass(frozen=True)
class Calibration:
    """One calibration step: its name, what it measured (scalars) and the frames it took."""

    name: str
    values: dict
    frames: int


def _counted(chip, name: str, measure) -> Calibration:
    before = chip.bus.counters.frames
    values = measure()
    return Calibration(name, {k: float(v) for k, v in values.items()}, chip.bus.counters.frames - before)


def _plane(chip) -> np.ndarray:
    return np.ones((chip.geometry.n, chip.geometry.n), dtype=np.complex128)


def reference(chip) -> Calibration:
    """``|R|^2`` per pixel per second: frames with the amplitude SLM dark."""

    def measure():
        ins, bus = chip.instruments, chip.bus
        t = bus.exposure(ins.camera, chip.state.exposure_s)
        chip.write_design(np.zeros((chip.geometry.n, chip.geometry.n)))
        bus.write(ins.field_amplitude, chip._pad(np.zeros((chip.geometry.n,) * 2), ins.field_amplitude.shape))
        stack = [chip._crop(bus.frame(ins.camera, chip.settings.frame_timeout_s)) for _ in range(REFERENCE_FRAMES)]
        m, n = chip.settings.camera_oversample, chip.geometry.n
        r2 = np.mean(stack, axis=0).reshape(n, m, n, m).mean(axis=(1, 3))  # per field pixel
        chip.state.reference_counts_per_s = r2 / t
        return {"reference_counts_mean": r2.mean(), "exposure_s": t}

    return _counted(chip, "reference", measure)


def exposure(chip) -> Calibration:
    """Scale the exposure so the plane wave's brightest pixel is ``EXPOSURE_TARGET`` of full scale."""

    def measure():
        full = 2 ** int(chip.instruments.camera.bitdepth) - 1
        chip.write_design(np.zeros((chip.geometry.n, chip.geometry.n)))
        for _ in range(4):
            peak = chip.frames(_plane(chip), chip.state.exposure_s).max() / full
            if 0.5 * EXPOSURE_TARGET < peak < 0.9:
                break
            chip.state.exposure_s *= EXPOSURE_TARGET / max(peak, 1e-3)
        return {"exposure_s": chip.state.exposure_s, "peak_fraction": peak}

    return _counted(chip, "exposure", measure)


def throughput(chip, twin) -> Calibration:
    """``K`` from a plane wave against the twin; its ``C`` becomes the drift's reference."""

    def measure():
        chip.write_design(np.zeros((chip.geometry.n, chip.geometry.n)))
        c, t = chip.cross(_plane(chip), chip.state.exposure_s)
        predicted = propagate(twin.backend.asarray(_plane(chip)[None]), twin.props[-1])
        predicted_power = float(np.sum(np.abs(twin.backend.to_numpy(predicted)) ** 2))
        r2 = chip.state.reference_counts_per_s * t
        chip.state.throughput = float(np.sum(np.abs(c) ** 2 / np.maximum(r2, 1e-12))) / (t * predicted_power)
        chip.state.probe_cross, chip.state.drift_rad = c, 0.0
        return {"counts_per_s_per_unit_power": chip.state.throughput}

    return _counted(chip, "throughput", measure)


def calibrate_drift(chip) -> Calibration:
    """``Delta = -arg sum C_now conj(C_first)``: the reference phase moved since the first probe."""

    def measure():
        chip.write_design(np.zeros((chip.geometry.n, chip.geometry.n)))
        c, _ = chip.cross(_plane(chip), chip.state.exposure_s)
        chip.state.drift_rad = -float(np.angle(np.sum(c * chip.state.probe_cross.conj())))
        return {"drift_rad": chip.state.drift_rad}

    return _counted(chip, "drift", measure)


def registration(chip, twin) -> Calibration:
    """The camera frame's shift (dy, dx) in pixels, from random amplitude probes.

    The measured complex field is carried back to the SLM plane with the twin's free space
    (``P^-1 = P^*`` for the symmetric ideal ``P``), where its amplitude is the probe's whatever
    phase screen the SLM has (a screen is phase only), and compared with the probe."""

    def measure():
        rng = np.random.default_rng(0x5E6)
        n = chip.geometry.n
        chip.write_design(np.zeros((n, n)))
        chip.state.shift_px = np.zeros(2)
        shifts = []
        be = twin.backend
        # probes lit in the middle only, so what they spread to stays on the camera
        yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
        g = chip.geometry
        radius = max(n / 2 - spread_px(g.pitch, g.wavelength, g.distance), n / 8)
        centre = (np.hypot(yy, xx) <= radius).astype(float)
        for _ in range(chip.settings.registration_probes):
            probe = rng.uniform(0.0, 1.0, (n, n)) * centre
            measured = chip.shot(probe / probe.max() + 0j)
            back = np.conj(be.to_numpy(propagate(be.asarray(np.conj(measured)[None]), twin.props[-1]))[0])
            shifts.append(subpixel_shift(np.abs(back) ** 2, (probe / probe.max()) ** 2))
        chip.state.shift_px = np.mean(shifts, axis=0)
        spread = np.std(shifts, axis=0) / math.sqrt(len(shifts))
        return {"shift_y_px": chip.state.shift_px[0], "shift_x_px": chip.state.shift_px[1], "stderr_px": spread.max()}

    return _counted(chip, "registration", measure)


def response(chip) -> Calibration:
    """The design SLM's phase response exponent ``gamma`` from uniform phases."""

    def measure():
        n = chip.geometry.n
        chip.state.gamma = 1.0
        levels = 2 * math.pi * np.arange(RESPONSE_LEVELS) / RESPONSE_LEVELS
        crosses = []
        for p in levels:
            chip.write_design(np.full((n, n), p))
            crosses.append(chip.cross(_plane(chip), chip.state.exposure_s)[0])
        realised = np.array([np.angle(np.sum(c * crosses[0].conj())) for c in crosses])
        chip.state.gamma = fit_gamma(levels, realised)
        return {"gamma": chip.state.gamma}

    return _counted(chip, "response", measure)


def fit_gamma(commanded: np.ndarray, realised: np.ndarray) -> float:
    """The ``gamma`` of ``2 pi (p / 2 pi)^gamma`` closest to the realised phases (wrapped residuals)."""

    def cost(g):
        model = 2 * math.pi * (commanded / (2 * math.pi)) ** g
        return float(np.sum(np.angle(np.exp(1j * (realised - model))) ** 2))

    grid = np.linspace(0.5, 1.5, 201)
    best = grid[int(np.argmin([cost(g) for g in grid]))]
    fine = np.linspace(best - 0.005, best + 0.005, 101)
    return float(fine[int(np.argmin([cost(g) for g in fine]))])


def calibrate_all(chip, twin) -> list[Calibration]:
    """The start-up sequence: reference, exposure, reference again at the new exposure,
    throughput (and the drift reference), registration, and the SLM response."""
    done = [reference(chip), exposure(chip), reference(chip), throughput(chip, twin), registration(chip, twin)]
    if chip.settings.calibrate_response:
        done.append(response(chip))
    return done
