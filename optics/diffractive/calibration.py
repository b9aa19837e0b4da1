"""Registration calibration: measure each plane's frame shift from the chip's own taps.

Registration error between planes (camera-to-SLM in a measure-and-reload system) is the
imperfection that breaks ``P = P^T`` and with it the forward-only gradient (docs/design.md section 1).
The remedy is to calibrate it to a few hundredths of a pixel. Procedure, using only what
the chip measures and the twin's model of free space:

1. program flat phases and send ``n_probes`` known random patterns through a data pass;
   the chip returns the measured fields ``u_1 .. u_L`` after each layer and the detector
   field ``y`` (holographic, with the camera's noise);
2. for each hop ``l``, propagate the field leaving plane ``l`` (the probe, or the measured
   ``u_l``) with the twin's ``P_l`` and compare its intensity with the measured intensity at
   plane ``l + 1`` (phase-only layers do not change intensity, so unknown phase screens do
   not matter): the shift ``d`` with ``I_meas(r) = I_pred(r - d)`` is the registration of
   that hop;
3. the shift is the slope of the cross-power spectrum's phase,
   ``arg(F[I_meas] conj(F[I_pred]))(f) = -2 pi f . d``, fitted by weighted least squares at
   low spatial frequencies after the integer peak of the cross-correlation is removed;
4. :meth:`optics.diffractive.chip.SimulatedChip.correct_registration` moves every frame back by the
   estimate; the residual (estimation error) is what remains.

The input hop ``P_0`` is not calibrated: the error pass never crosses it (the gradient
needs ``eps_1`` at layer 1), so its registration cannot bias the forward-only gradient; a
shifted input is just a shifted input. It also cannot be measured this way, because the
input is lit by an illumination envelope the twin does not know.
"""

from __future__ import annotations

import numpy as np

from optics.core.measurement import PassKey
from optics.core.propagation import propagate

CALIBRATION_ROUND = 2**31 - 1  # noise key of the calibration passes (never a training round)


def subpixel_shift(measured: np.ndarray, predicted: np.ndarray, max_freq: float = 0.08) -> np.ndarray:
    """Shift (dy, dx) in pixels with ``measured(r) ~ predicted(r - d)``, both (n, n) real images.

    Integer part from the cross-correlation peak; fractional part from the weighted
    least-squares slope of the cross-power phase at ``|f| < max_freq`` cycles per pixel.
    """
    a = np.fft.fft2(measured - measured.mean())
    b = np.fft.fft2(predicted - predicted.mean())
    cross = a * b.conj()
    n0, n1 = measured.shape
    corr = np.fft.ifft2(cross).real
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), dtype=np.float64)
    peak = (peak + np.array([n0, n1]) / 2) % np.array([n0, n1]) - np.array([n0, n1]) / 2
    fy, fx = np.fft.fftfreq(n0)[:, None], np.fft.fftfreq(n1)[None, :]
    cross = cross * np.exp(2j * np.pi * (fy * peak[0] + fx * peak[1]))  # remove the integer part
    sel = (fy**2 + fx**2 < max_freq**2) & (np.abs(cross) > 0)
    sel[0, 0] = False
    w = np.abs(cross[sel])
    phase = np.angle(cross[sel])
    design = -2 * np.pi * np.stack([np.broadcast_to(fy, sel.shape)[sel], np.broadcast_to(fx, sel.shape)[sel]], axis=1)
    frac, *_ = np.linalg.lstsq(design * w[:, None], phase * w, rcond=None)
    return peak + frac


def measure_registration(chip, twin, n_probes: int = 4, seed: int = 0, max_freq: float = 0.08) -> np.ndarray:
    """Estimated registration shifts (L+1, 2) (y, x) in pixels of the hops ``P_1 .. P_L`` (row 0,
    the input hop, stays 0).

    ``twin`` supplies the model of free space (its propagators); the chip is left
    programmed with flat phases.
    """
    g, be = chip.geometry, chip.backend
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    rng = np.random.default_rng([int(seed), 0xCA1])
    o = (g.n - g.object_px) // 2
    probes = np.zeros((n_probes, g.n, g.n))
    probes[:, o : o + g.object_px, o : o + g.object_px] = rng.uniform(0, 1, (n_probes, g.object_px, g.object_px))
    probes /= np.sqrt((probes**2).sum(axis=(1, 2), keepdims=True))
    flat = np.zeros((g.n_layers, g.n, g.n))
    chip.program(flat)
    taps = chip.data_pass(probes, PassKey(CALIBRATION_ROUND, "data", tuple(range(n_probes))))
    leaving = [be.asarray(probes, be.complex_dtype)] + [taps.fields[i] for i in range(g.n_layers)]
    arriving = [taps.fields[i] for i in range(g.n_layers)] + [taps.output]
    shifts = np.zeros((g.n_layers + 1, 2))
    for hop in range(1, g.n_layers + 1):  # P_0 is left alone: see the module docstring
        pred = be.to_numpy(_intensity(propagate(leaving[hop], twin.props[hop])))
        meas = be.to_numpy(_intensity(arriving[hop]))
        shifts[hop] = np.mean([subpixel_shift(m, p, max_freq) for m, p in zip(meas, pred)], axis=0)
    return shifts


def calibrate_registration(chip, twin, n_probes: int = 4, seed: int = 0) -> np.ndarray:
    """Measure and correct ``chip``'s registration; returns the estimate (pixels)."""
    est = measure_registration(chip, twin, n_probes, seed)
    chip.correct_registration(est)
    return est


def _intensity(field):
    return (field * field.conj()).real
