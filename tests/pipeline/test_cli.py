"""The ffm-train command: one-line errors before any work, multirun, a real MLflow server."""

import os
import subprocess
import sys

import pytest
from conftest import compose
from mlflow.tracking import MlflowClient

from pipeline import train

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")


def test_bad_value_is_one_line_before_ray_starts(tmp_path):
    out = subprocess.run(
        [BIN, "trainer.lr=-1", f"output_dir={tmp_path}/o"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "ffm-train: error: trainer.lr must be a finite number > 0, got -1"
    assert "Ray" not in out.stdout + out.stderr and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_multirun_is_a_parallel_grid_sweep_with_one_parent_and_a_report(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = subprocess.run(
        [BIN, "-m", "trainer=ffm,insilico", "debug=smoke", f"tracking.uri='{uri}'", f"sweep.root={tmp_path}/sweeps"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ffm-optics").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert parent.data.tags["sweep.name"] == "multirun" and parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    # insilico deploys the masks of an ideal job trained once for it
    assert sorted(r.data.params["trainer.kind"] for r in children) == ["ffm", "ideal", "insilico"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert (tmp_path / "sweeps" / parent.info.run_id / "report" / "sweep.csv").exists()
    assert not (tmp_path / "multirun").exists()  # not Hydra's serial multirun


@pytest.mark.slow
def test_run_logs_to_a_remote_tracking_server(ray_cluster, tmp_path, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the standard way to point at a server
    s = train(compose("debug=smoke", f"output_dir={tmp_path}/out"))
    assert s["tracking_uri"] == mlflow_server
    client = MlflowClient(mlflow_server)
    run = client.get_run(s["run_id"])
    assert run.info.status == "FINISHED" and len(client.get_metric_history(s["run_id"], "round/loss")) == 6
    assert "phases/final_phases.npz" in {a.path for a in client.list_artifacts(s["run_id"], "phases")}
    assert (tmp_path / "artifacts").exists()  # artifacts went through the server
