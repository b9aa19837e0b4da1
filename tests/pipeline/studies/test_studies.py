"""ffm-train experiment=focusing and experiment=exceptional_point, in-process, on the real cluster."""

import json

import pytest
from conftest import compose
from mlflow.tracking import MlflowClient

from pipeline.config import ConfigError, load_config
from pipeline.studies.runner import run_study


def _cfg(tmp_path, *overrides):
    return load_config(
        compose(*overrides, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path}/out")
    )


def test_exceptional_point_study_lands_on_the_analytic_point(ray_cluster, tmp_path):
    cfg = _cfg(
        tmp_path,
        "experiment=exceptional_point",
        "chip.level=0",
        "study.exceptional_point.seeds=[1,2]",
        "study.exceptional_point.steps=12",
        "study.exceptional_point.lr=1.0",
    )
    summary = run_study(cfg)
    for row in summary["seeds"]:  # noise off: the realised device ends on its own EP
        assert row["true_splitting_start"] > 1.0
        assert row["true_splitting_end"] < 1e-3
        assert abs(row["detuning_difference_end"]) < 1e-5
        assert row["coupling_end"] == pytest.approx(row["analytic_ep_coupling"], abs=1e-5)
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.data.tags["study"] == "exceptional_point"
    assert len(client.get_metric_history(run.info.run_id, "seed1/splitting")) == 13
    assert "figures/exceptional_point.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["study"] == "exceptional_point"


def test_focusing_study_ffm_beats_model_free_optimisers_in_optical_passes(ray_cluster, tmp_path):
    cfg = _cfg(
        tmp_path,
        "experiment=focusing",
        "study.focusing.seeds=[1]",
        "+study.focusing.medium.segments=8",
        "study.focusing.ffm_steps=30",
        "study.focusing.sequential_cycles=1",
        "study.focusing.pso_iterations=20",
    )
    summary = run_study(cfg)
    rows = {r["method"]: r for r in summary["seeds"]}
    assert rows["ffm"]["fraction_of_theory"] > 0.8  # Vellekoop-Mosk optimum pi/4 (N-1) + 1, N = 64
    assert rows["ffm"]["enhancement"] > rows["sequential"]["enhancement"] > rows["pso"]["enhancement"] / 2
    assert rows["ffm"]["passes"] < rows["sequential"]["passes"]
    assert 0.9 < rows["ffm"]["fwhm_um"] / rows["ffm"]["airy_fwhm_um"] < 1.2
    client = MlflowClient(summary["tracking_uri"])
    arts = {a.path for a in client.list_artifacts(summary["run_id"], "figures")}
    assert {"figures/focal_spots.png", "figures/enhancement_vs_passes.png"} <= arts


@pytest.mark.parametrize(
    "override,match",
    [
        ("+study.focusing.medium.segmnts=8", "study.focusing: unknown MediumSpec option"),
        ("study.focusing.targets=[[99,99]]", "study.focusing"),
        ("study.focusing.ffm_steps=0", "study.focusing.ffm_steps must be a finite number > 0"),
    ],
)
def test_bad_study_settings_fail_in_one_line_before_ray(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run_study(_cfg(tmp_path, "experiment=focusing", override))


def test_a_study_that_fails_leaves_its_run_failed(ray_cluster, tmp_path, monkeypatch):
    import pipeline.studies.runner as runner

    def broken(cfg, tracker, results, wall_s):
        tracker.event("logging the results")
        raise RuntimeError("the results could not be logged")

    monkeypatch.setattr(runner, "_log_study", broken)
    cfg = _cfg(
        tmp_path, "experiment=exceptional_point", "study.exceptional_point.seeds=[1]", "study.exceptional_point.steps=2"
    )
    with pytest.raises(RuntimeError, match="could not be logged"):
        run_study(cfg)
    client = MlflowClient(cfg.tracking.uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["study"] == "exceptional_point"
    with open(client.download_artifacts(run.info.run_id, "events.txt", str(tmp_path))) as f:
        events = f.read()
    assert "logging the results" in events
