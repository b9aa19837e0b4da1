"""Light-level columns of a photon sweep's report (``experiment=photon_sweep``).

For every (trainer, photons per sample) row: mean photoelectrons per detector pixel (from
the measured fraction of the light that reached the detectors), the optical energy per
operation and operations per joule (:mod:`optics.core.energy` convention: ops = 2 (L+1) N^4 per
sample, light only; under the reload model the photons of every measured hop count,
:func:`optics.core.energy.photons_per_pass`), and for FFM the projected wall time of the same training on
hardware (Taichi-II clocks: 42 fps, 17 ms SLM refresh) next to the simulated job's wall time
(the whole job, setup included, on the machine that ran it).

The chip's quantities (detector pixels, wavelength, grid, layers, quantum efficiency) are the
ones each job logged from its plan (:func:`pipeline.reports.run_report.plan_params`).
"""

from __future__ import annotations

import numpy as np

from optics.core import energy
from pipeline.reports.run_report import DETECTOR_PIXELS, GRID_N, N_LAYERS, QUANTUM_EFFICIENCY, WAVELENGTH
from pipeline.sweeps.keys import parse_key

AXIS = "chip.measurement.photons_per_sample"  # photon sweeps get light-level columns
MEASUREMENT_MODEL = "plan.measurement.model"  # reload: every measured hop spends the budget again


def add_photon_columns(rows: list[dict], runs: list[dict]) -> list[dict]:
    """``rows`` (from :func:`pipeline.reports.sweep_report.sweep_rows`) with the light-level columns."""
    by_job: dict[tuple, list[dict]] = {}
    for r in runs:
        trainer, point, _ = parse_key(r["tags"]["sweep.job"])
        by_job.setdefault((trainer, point), []).append(r)
    top = max((float(dict(p)[AXIS]) for t, p in by_job if AXIS in dict(p)), default=None)
    brightest = [
        r for (t, p), rs in by_job.items() if t != "ideal" and float(dict(p).get(AXIS, "nan")) == top for r in rs
    ]
    for row in rows:
        if AXIS not in row or row["trainer"] == "ideal":
            continue
        point = tuple((k, row[k]) for k in row if k.startswith(("chip.", "trainer.", "task.")))
        sel = by_job.get((row["trainer"], point), [])
        if sel:
            row.update(_columns(row["trainer"], float(row[AXIS]), sel, brightest))
    return rows


def _detected_fraction(runs: list[dict], brightest: list[dict]) -> float:
    """Fraction of the input light reaching the detectors, noise-free: the twin's (same light
    path when only the camera is imperfect), else the chips' measurement at the sweep's
    brightest setting (a measurement at low light is biased by clipped read noise)."""
    twin = [
        r["metrics"]["final_detected_fraction/twin"] for r in runs if "final_detected_fraction/twin" in r["metrics"]
    ]
    source = twin or [v for r in brightest for k, v in r["metrics"].items() if k.startswith("final_detected_fraction/")]
    return float(np.mean(source))


def _columns(trainer: str, photons: float, runs: list[dict], brightest: list[dict]) -> dict:
    p = runs[0]["params"]
    n, n_layers = int(_logged(runs[0], GRID_N)), int(_logged(runs[0], N_LAYERS))
    frac = _detected_fraction(runs, brightest)
    out = {
        "photoelectrons_per_detector_px": energy.photons_per_detector_pixel(
            photons, float(frac), _logged(runs[0], DETECTOR_PIXELS), _logged(runs[0], QUANTUM_EFFICIENCY)
        ),
        "optical_J_per_op": energy.energy_per_op(
            energy.photons_per_pass(photons, n_layers + 1, p.get(MEASUREMENT_MODEL, "monitors")),
            _logged(runs[0], WAVELENGTH),
            n,
            n_layers,
        ),
    }
    out["ops_per_J"] = 1.0 / out["optical_J_per_op"]
    if trainer == "ffm":
        rounds = np.mean([r["counts"]["loss"] for r in runs])
        batch = int(p["trainer.batch_size"])
        out["hardware_training_s"] = energy.HardwareClock().training_seconds(int(rounds * batch), int(rounds), n_layers)
        out["simulation_job_s"] = float(np.mean([r["duration_s"] for r in runs]))
    return out


def _logged(run: dict, key: str) -> float:
    """A quantity the job logged from its plan; a run from before jobs logged it is named with the fix."""
    try:
        return float(run["params"][key])
    except KeyError:
        raise ValueError(
            f"run {run.get('run_id', '?')} did not log {key} (a job from before runs logged their plan); "
            "rerun the sweep with this version to report its light-level columns"
        ) from None
