"""A photon sweep's light-level columns come from what each job logged from its plan, not from a
chip rebuilt out of config strings: the logged quantities follow the task's classes and the topology."""

import pytest
from conftest import compose

from pipeline.config import load_config
from pipeline.reports.photon_report import add_photon_columns
from pipeline.reports.run_report import (
    DETECTOR_PIXELS,
    GRID_N,
    N_CLASSES,
    N_LAYERS,
    QUANTUM_EFFICIENCY,
    WAVELENGTH,
    plan_params,
)
from pipeline.run.build import make_plan


def _logged(n_classes: int, *overrides) -> dict:
    return plan_params(make_plan(load_config(compose("chip=diffractive_small", *overrides)), n_classes))


def test_a_job_logs_the_quantities_of_its_own_chip():
    p = _logged(10)
    assert (p[GRID_N], p[N_LAYERS], p[N_CLASSES], p[DETECTOR_PIXELS]) == ("64", "3", "10", "360")  # 10 x 6 x 6
    assert float(p[WAVELENGTH]) == 532e-9 and float(p[QUANTUM_EFFICIENCY]) == 0.64
    assert _logged(4)[DETECTOR_PIXELS] == str(4 * 36)  # a 4-class task: 4 detectors, not 10
    qe = _logged(10, "+chip.measurement.quantum_efficiency=0.5")
    assert float(qe[QUANTUM_EFFICIENCY]) == 0.5


def _runs(params: dict) -> list[dict]:
    return [
        {
            "run_id": f"run-{t}",
            "tags": {"sweep.job": f"{t}/chip.measurement.photons_per_sample=1000.0/seed=1"},
            "params": params | {"trainer.batch_size": "32"},
            "metrics": {"final_detected_fraction/chip0": 0.5},
            "counts": {"loss": 100},
            "duration_s": 60.0,
        }
        for t in ("ffm", "insilico")
    ]


def test_the_columns_use_the_logged_detector_pixels():
    rows = [{"trainer": "ffm", "chip.measurement.photons_per_sample": "1000.0"}]
    out = add_photon_columns(rows, _runs(_logged(4)))
    assert out[0]["photoelectrons_per_detector_px"] == pytest.approx(1000 * 0.5 * 0.64 / (4 * 36))


def test_a_run_that_did_not_log_its_plan_is_named():
    rows = [{"trainer": "ffm", "chip.measurement.photons_per_sample": "1000.0"}]
    with pytest.raises(ValueError, match=f"run run-ffm did not log {GRID_N}"):
        add_photon_columns(rows, _runs({"chip.geometry": "small"}))
