"""Energy per operation, photons per detector pixel, projected hardware time; photon-sweep columns."""

import math

import pytest

from optics.core import energy
from pipeline.reports.photon_report import add_photon_columns


def test_photon_energy_and_the_operation_convention():
    assert energy.photon_energy(532e-9) == pytest.approx(3.734e-19, rel=1e-3)
    assert energy.ops_per_sample(200, 5) == 2 * 6 * 200.0**4  # 1.92e10
    # 1e7 photons at 532 nm over the reference chip's 1.92e10 operations
    assert energy.energy_per_op(1e7, 532e-9, 200, 5) == pytest.approx(1e7 * 3.734e-19 / 1.92e10, rel=1e-3)
    with pytest.raises(ValueError, match="photons_per_sample"):
        energy.energy_per_op(math.inf, 532e-9, 200, 5)


def test_photons_per_pixel_and_projected_hardware_time():
    assert energy.photons_per_detector_pixel(1e3, 0.5, 360, 0.64) == pytest.approx(1e3 * 0.5 * 0.64 / 360)
    clock = energy.HardwareClock()  # 42 fps, 17 ms SLM refresh
    assert clock.training_seconds(samples=420, rounds=10, n_layers=5) == pytest.approx(420 * 11 / 42 + 0.17)
    with pytest.raises(ValueError, match="camera_fps"):
        energy.HardwareClock(camera_fps=0)


def test_photon_sweep_rows_get_light_level_columns():
    params = {
        "chip.geometry": "small",
        "chip.n": "None",
        "chip.n_layers": "None",
        "chip.pad": "None",
        "chip.distance": "None",
        "trainer.batch_size": "32",
        # what the job logged from its plan (pipeline.reports.run_report.plan_params): the small chip
        "plan.geometry.n": "64",
        "plan.geometry.n_layers": "3",
        "plan.geometry.wavelength": "5.32e-07",
        "plan.detector_pixels": "360",
        "plan.measurement.quantum_efficiency": "0.64",
    }
    runs = [
        {
            "tags": {"sweep.job": f"{t}/chip.measurement.photons_per_sample=1000.0/seed=1"},
            "params": params,
            "metrics": {"final_detected_fraction/chip0": 0.5},
            "counts": {"loss": 100},
            "duration_s": 60.0,
        }
        for t in ("ffm", "insilico")
    ]
    rows = [{"trainer": t, "chip.measurement.photons_per_sample": "1000.0"} for t in ("ffm", "insilico", "ideal")]
    out = add_photon_columns(rows, runs)
    # small chip: 10 detectors of 6 x 6 px, QE 0.64
    assert out[0]["photoelectrons_per_detector_px"] == pytest.approx(1000 * 0.5 * 0.64 / 360)
    assert out[0]["optical_J_per_op"] == pytest.approx(1000 * 3.734e-19 / (2 * 4 * 64.0**4), rel=1e-3)
    assert out[0]["hardware_training_s"] == pytest.approx(3200 * 7 / 42 + 100 * 0.017)
    assert "hardware_training_s" not in out[1] and "optical_J_per_op" not in out[2]


def test_reload_spends_the_budget_at_every_measured_hop():
    assert energy.photons_per_pass(1e7, 6, "monitors") == 1e7
    assert energy.photons_per_pass(1e7, 6, "reload") == 6e7
    with pytest.raises(ValueError, match="monitors or reload"):
        energy.photons_per_pass(1e7, 6, "taps")
