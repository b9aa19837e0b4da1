"""trainer=pat (physics-aware training) through the pipeline: plan, worker step, rig projection,
sweep grid and report, and a tracked ffm-train run on the session's Ray cluster."""

import numpy as np
import pytest
from conftest import compose
from mlflow.tracking import MlflowClient

from optics.core.pat import physics_aware_step
from pipeline import train
from pipeline.config import ConfigError, TrainerKind, load_config
from pipeline.reports.sweep_report import sweep_rows
from pipeline.run.actors import ChipWorker
from pipeline.run.build import load_split, make_plan
from pipeline.run.coordinator import Step, Target
from pipeline.run.hardware import project_epoch
from pipeline.run.trainers import DEPLOY_ON, TRAIN_ON, TRAIN_STEP
from pipeline.sweeps.grid import expand


def test_every_trainer_says_where_it_trains_what_it_steps_and_where_it_deploys():
    assert set(TRAIN_ON) == set(TRAIN_STEP) == set(DEPLOY_ON) == set(TrainerKind)
    plan = make_plan(load_config(compose("trainer=pat", "chip=diffractive_small")), 10)
    assert plan.trainer == TrainerKind.PAT and plan.train_on == Target.CHIP and plan.deploy_on == Target.CHIP
    assert TRAIN_STEP[plan.trainer] == Step.PHYSICS_AWARE
    assert {TRAIN_STEP[k] for k in TrainerKind if k != TrainerKind.PAT} == {Step.FORWARD_ONLY}


def test_pat_on_a_layer_pipeline_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match="trainer.kind=pat") as e:
        load_config(compose("trainer=pat", "topology=pipeline"))
    assert "\n" not in str(e.value)


def test_the_worker_runs_the_pat_step_it_is_asked_for():
    """One coarse call, the step by argument: PAT's round is the optics step on the worker's own chip
    and twin; it measures what FFM's round measures (same loss) and steps differently."""
    cfg = load_config(compose("trainer=pat", "chip=diffractive_small", "tracking=none"))
    split = load_split(cfg)
    plan = make_plan(cfg, split.n_classes)
    worker = ChipWorker(plan.chips[0], split, plan.objective)
    g = plan.geometry
    params = {"phase": np.random.default_rng(0).uniform(2.5, 3.8, (g.n_layers, g.n, g.n))}
    shard = np.arange(8)
    pat = worker.run_round(params, 1, shard, 3, Target.CHIP, fidelity=True, step=Step.PHYSICS_AWARE)
    ffm = worker.run_round(params, 1, shard, 3, Target.CHIP, fidelity=True, step=Step.FORWARD_ONLY)
    x, y, ids = worker._inputs(split.train, shard)
    direct = physics_aware_step(worker.chip, worker.twin, x, y, plan.objective, 3, ids)
    np.testing.assert_array_equal(pat.grads["phase"], direct.grad_phase)
    assert pat.loss == ffm.loss and pat.correct == ffm.correct
    assert not np.allclose(pat.grads["phase"], ffm.grads["phase"])
    assert pat.fidelity_cosine < ffm.fidelity_cosine  # the twin's Jacobian on an imperfect chip


def test_a_pat_sample_costs_the_rig_its_data_pass_only():
    seconds = [{"train": 4.0, "infer": 2.0}, {"train": 5.0, "infer": 1.5}]
    pat = project_epoch(seconds, 10, 8, 100, True, True, Step.PHYSICS_AWARE)
    assert pat["rig/projected_train_s"] == 10 * 8 * 2.0  # L hops per sample, as an inference sample
    assert project_epoch(seconds, 10, 8, 100, True, True)["rig/projected_train_s"] == 10 * 8 * 5.0


def test_a_sweep_runs_only_the_trainers_it_names_and_reports_them_in_order(tmp_path):
    raw = compose("experiment=imperfection_sweep", "chip=diffractive_small", "sweep.trainers=[pat]")
    jobs = expand(load_config(raw).sweep)
    assert {j.trainer for j in jobs} == {"pat"} and len(jobs) == 3 * 6 and all(j.needs is None for j in jobs)
    every = expand(load_config(compose("experiment=imperfection_sweep")).sweep)
    assert [j.trainer for j in every][:3] == ["ideal"] * 3 and {j.trainer for j in every} == set(TrainerKind)

    def run(trainer, acc):
        metric = "final_test_accuracy/twin" if trainer == "ideal" else "final_test_accuracy/chip0"
        key = f"{trainer}/seed=1" if trainer == "ideal" else f"{trainer}/chip.level=1.0/seed=1"
        return {"tags": {"sweep.job": key, "trainer": trainer}, "metrics": {metric: acc}, "medians": {}}

    runs = [run(t, a) for t, a in (("ffm", 0.9), ("pat", 0.8), ("insilico", 0.7), ("ideal", 0.85))]
    rows = sweep_rows(runs)
    assert [r["trainer"] for r in rows] == ["ideal", "insilico", "pat", "ffm"]
    assert rows[2]["gap_to_ideal_pp"] == pytest.approx(-5.0)


def test_ffm_train_trainer_pat_is_a_tracked_run(ray_cluster, tmp_path, sqlite_uri):
    s = train(
        compose(
            "debug=smoke",
            "trainer=pat",
            "trainer.fidelity_every=2",
            f"tracking.uri='{sqlite_uri}'",
            f"output_dir={tmp_path}/out",
        )
    )
    assert s["trainer"] == "pat" and s["deployed_on"] == "chip" and s["rounds"] == 6
    assert set(s["chips"]) == {"chip0", "chip1"}
    client = MlflowClient(sqlite_uri)
    run = client.get_run(s["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["trainer"] == "pat"
    assert run.data.params["trainer.kind"] == "pat"
    assert len(client.get_metric_history(s["run_id"], "round/loss")) == 6
    (name,) = [k for k in run.data.metrics if "fidelity" in k and "cosine" in k]  # PAT's gradient fidelity
    fidelity = client.get_metric_history(s["run_id"], name)
    assert len(fidelity) == 3 and all(-1 <= m.value <= 1 for m in fidelity)
    assert (tmp_path / "out" / "phases.npz").exists()
