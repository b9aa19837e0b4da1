"""Registration calibration: sub-pixel shift estimation, residual, restored gradient fidelity."""

import numpy as np
import pytest

from optics.core import ffm
from optics.core.backend import get_backend
from optics.core.data import encode_amplitude, load_digits_split
from optics.core.measurement import MeasurementSpec
from optics.diffractive.calibration import calibrate_registration, measure_registration, subpixel_shift
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

G = Geometry.small(n_classes=10)
REGISTRATION_ONLY = dict(
    distance_error_m=0,
    phase_screen_rad=0,
    slm_gamma_spread=0,
    slm_bits=0,
    crosstalk_sigma_px=0,
    illumination_falloff=0,
    illumination_ripple=0,
    registration_tilt_rad=0,
)


@pytest.mark.parametrize("shift", [(0.3, -0.7), (2.25, 1.1), (-0.04, 0.02)])
def test_subpixel_shift_recovers_a_fourier_shift(rng, shift):
    img = rng.random((64, 64))
    fy, fx = np.fft.fftfreq(64)[:, None], np.fft.fftfreq(64)[None, :]
    moved = np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))).real
    np.testing.assert_allclose(subpixel_shift(moved, img), shift, atol=2e-3)


def test_calibration_leaves_a_few_hundredths_of_a_pixel_with_every_imperfection_and_noise():
    chip = SimulatedChip(G, HardwareSpec(level=1.0, registration_shift_px=0.25), MeasurementSpec(), seed=3)
    true = chip.reveal().shifts_m / G.pitch
    est = measure_registration(chip, DigitalTwin(G))
    residual = est[1:] - true[1:]
    assert np.sqrt((true[1:] ** 2).mean()) > 0.3
    assert np.abs(residual).max() < 0.06 and np.sqrt((residual**2).mean()) < 0.03
    print(
        f"\n  registration rms {np.sqrt((true[1:] ** 2).mean()):.3f} px -> residual rms "
        f"{np.sqrt((residual**2).mean()):.4f} px"
    )


def test_calibration_restores_the_forward_only_gradient():
    be = get_backend("numpy", "complex128")
    split = load_digits_split(0)
    x, y = encode_amplitude(split.train.images[:16], G.n, G.object_px), split.train.labels[:16]
    obj = ffm.Objective(temperature=0.003)
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (G.n_layers, G.n, G.n))
    chip = SimulatedChip(
        G,
        HardwareSpec(level=1.0, registration_shift_px=0.25, **REGISTRATION_ONLY),
        MeasurementSpec.off(),
        seed=3,
        backend=be,
    )
    chip.program(phases)
    before = ffm.measure_fidelity(chip, x, y, obj, 0, range(16))["cosine"]
    calibrate_registration(chip, DigitalTwin(G, be))
    chip.program(phases)
    after = ffm.measure_fidelity(chip, x, y, obj, 0, range(16))["cosine"]
    assert before < 0.5 and after > 0.98
    with pytest.raises(ValueError, match="shifts_px must be"):
        chip.correct_registration(np.zeros(3))
