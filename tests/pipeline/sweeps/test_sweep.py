"""Sweeps: job expansion, parent/child runs in MLflow, parallel jobs on Ray, resume, report."""

import csv

import pytest
from conftest import compose
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from pipeline.config import ConfigError, load_config
from pipeline.sweeps.grid import expand, run_sweep


def _cfg(tmp_path, *overrides, axes=None):
    raw = OmegaConf.to_container(
        compose(
            "experiment=imperfection_sweep",
            "chip=diffractive_small",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"sweep.root={tmp_path}/sweeps",
            *overrides,
        ),
        resolve=True,
    )
    if axes is not None:
        raw["sweep"]["axes"] = axes
    return load_config(raw)


def test_ideal_masks_are_trained_once_per_seed_and_deployed_at_every_level(tmp_path):
    jobs = expand(_cfg(tmp_path).sweep)
    by_trainer = {t: [j for j in jobs if j.trainer == t] for t in ("ideal", "insilico", "pat", "ffm")}
    assert len(by_trainer["ideal"]) == 3  # one per seed, not per level
    assert len(by_trainer["ffm"]) == len(by_trainer["pat"]) == len(by_trainer["insilico"]) == 3 * 6
    assert all(j.needs == f"ideal/seed={j.seed}" for j in by_trainer["insilico"])
    assert jobs[0].trainer == "ideal"  # masks first: insilico jobs wait on them


def test_a_bad_sweep_axis_fails_before_any_job(tmp_path):
    with pytest.raises(ConfigError, match="sweep.axes.chip.levl"):
        run_sweep(_cfg(tmp_path, axes={"chip.levl": [1.0]}))
    with pytest.raises(ConfigError, match="trainer.lr"):
        run_sweep(_cfg(tmp_path, axes={"trainer.lr": [-1.0]}))
    assert not (tmp_path / "sweeps").exists()


def test_sweep_runs_in_parallel_resumes_where_it_stopped_and_reports(ray_cluster, tmp_path):
    args = (
        "sweep.seeds=[1,2]",
        "trainer.max_rounds=4",
        "trainer.epochs=1",
        "trainer.eval_batch_size=512",
        "trainer.fidelity_every=2",
    )
    levels = {"chip.level": [0.0, 2.0]}
    first = run_sweep(_cfg(tmp_path, *args, "sweep.stop_after=3", "sweep.max_parallel=1", axes=levels))
    assert first["stopped"] and not first["failed"]
    client = MlflowClient(first["tracking_uri"])
    parent = first["parent_run_id"]
    assert client.get_run(parent).info.status == "KILLED"

    second = run_sweep(_cfg(tmp_path, *args, axes=levels))  # the same command again: resumes
    assert second["parent_run_id"] == parent and not second["failed"] and not second["stopped"]
    children = client.search_runs([client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    keys = sorted(r.data.tags["sweep.job"] for r in children)
    assert len(keys) == len(set(keys)) == 14  # no job ran twice
    assert all(r.info.status == "FINISHED" for r in children)
    assert client.get_run(parent).info.status == "FINISHED"

    with open(second["report"][0], newline="") as f:
        rows = list(csv.DictReader(f))
    acc = {(r["trainer"], r["chip.level"]): float(r["mean"]) for r in rows}
    assert acc[("ffm", "0.0")] == acc[("ideal", "0.0")]  # a level-0 chip is the twin: identical training
    assert acc[("insilico", "0.0")] == acc[("ideal", "0.0")]
    assert acc[("pat", "0.0")] == pytest.approx(acc[("ideal", "0.0")], abs=0.02)  # the twin's Jacobian is the chip's
    fid = {(r["trainer"], r["chip.level"]): r["fidelity_cosine"] for r in rows}
    assert float(fid[("ffm", "0.0")]) == pytest.approx(1.0, abs=1e-6)
    assert float(fid[("pat", "0.0")]) == pytest.approx(1.0, abs=1e-4)
    artifacts = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/sweep.csv", "report/sweep.md", "report/sweep.png"} <= artifacts
