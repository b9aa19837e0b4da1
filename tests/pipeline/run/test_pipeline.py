"""The pipeline on a real local Ray cluster with real MLflow stores."""

import json

import mlflow
import numpy as np
import pytest
from conftest import compose
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from optics.core.data import load_digits_split
from pipeline import train
from pipeline.config import load_config
from pipeline.run import checkpoint
from pipeline.run.actors import ChipWorker
from pipeline.run.build import load_split, make_plan, make_workers
from pipeline.run.coordinator import aggregate, batch_indices, shards
from pipeline.run.rounds import ChipFailure, call_round


def _cfg(tmp_path, *overrides, uri=None):
    track = [f"tracking.uri='{uri}'"] if uri else ["tracking=none"]
    return compose("debug=smoke", f"output_dir={tmp_path}/out", *track, *overrides)


def _phases(tmp_path):
    with np.load(tmp_path / "out" / "phases.npz") as z:
        return {k: z[k] for k in z.files}


def test_aggregated_gradient_equals_one_process(ray_cluster):
    """Two chips as actors, aggregated by the coordinator == the same chips in this process."""
    cfg = load_config(compose("debug=smoke", "tracking=none"))
    split = load_split(cfg)
    plan = make_plan(cfg, split.n_classes)
    workers = make_workers(plan, cfg, ray_cluster.put(split))
    g = plan.geometry
    params = {"shared": {"phase": np.random.default_rng(0).uniform(0, 6, (g.n_layers, g.n, g.n))}}
    shard_map = shards(batch_indices(0, 0, 0, len(split.train), 32), [0, 1])
    results, alive, _ = call_round(workers, params, shard_map, 0, "chip", False, True, plan.policy, print)
    with threadpool_limits(1):  # as in the actors (num_cpus=1): same BLAS reduction order, same bits
        local = {
            k: ChipWorker(plan.chips[k], split, plan.objective).run_round(params["shared"], 1, shard_map[k], 0, "chip")
            for k in (0, 1)
        }
    remote_g, local_g = aggregate(results, True)["shared"]["phase"], aggregate(local, True)["shared"]["phase"]
    np.testing.assert_array_equal(remote_g, local_g)
    assert alive == [0, 1] and results[0].n == results[1].n == 16
    assert not np.array_equal(results[0].grads["phase"], results[1].grads["phase"])  # different chips
    for w in workers:
        ray_cluster.kill(w)


def test_smoke_run_is_tracked_in_sqlite(ray_cluster, tmp_path, sqlite_uri):
    extra = ("tracking.log_images=true", "tracking.system_metrics_s=0.2", "tracking.register_model=ffm-smoke")
    cfg = _cfg(tmp_path, *extra, uri=sqlite_uri)
    summary = train(cfg)
    assert set(summary["chips"]) == {"chip0", "chip1"} and summary["rounds"] == 6
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["run_id"] == summary["run_id"]
    client = MlflowClient(sqlite_uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.kind"] == "ffm" and run.data.params["topology.n_chips"] == "2"
    assert {"mlflow.source.git.commit", "backend", "chips", "ray", "mlflow"} <= set(run.data.tags)
    tags = run.data.tags  # a run a researcher recognises: its name, tags and description
    assert run.info.run_name == "ffm diffractive/small digits data_parallel x2 level=1 seed=0"
    assert (tags["chip"], tags["geometry"], tags["task"], tags["topology"], tags["level"]) == (
        "diffractive",
        "small",
        "digits",
        "data_parallel",
        "1",
    )
    params = run.data.params  # the small chip's geometry, resolved, with units in the names
    assert (params["physics.pitch_m"], params["physics.grid_px"], params["physics.layers"]) == ("3.6e-05", "64", "3")
    note = tags["mlflow.note.content"]
    assert (
        "| chip0 | " in note and f"| the same masks on the digital twin | {summary['twin_test_accuracy']:.3f} |" in note
    )
    metrics = run.data.metrics
    for key in (
        "round/loss",
        "round/grad_norm",
        "round/batch_accuracy",
        "timing/overhead_frac",
        "timing/samples_per_s",
        "timing/slowest_chip_s",
        "timing/broadcast_s",
        "timing/collect_s",
        "timing/update_s",
        "timing/logging_s",
        "val_accuracy/chip0",
        "test_accuracy/chip1",
        "final_test_accuracy/chip0",
    ):
        assert key in metrics, key
    assert len(client.get_metric_history(run.info.run_id, "round/loss")) == 6
    assert any(m.step == 0 for m in client.get_metric_history(run.info.run_id, "fidelity/gradient_cosine")) is False
    arts = {
        a.path
        for d in ("", "figures", "hidden", "phases", "config", "checkpoint", "model")
        for a in client.list_artifacts(run.info.run_id, d or None)
    }
    for path in (
        "figures/phase_masks_shared.png",
        "figures/learning_curves.png",
        "figures/confusion_chip0.png",
        "figures/detector_examples_chip1.png",
        "hidden/chip0_imperfections.npz",
        "phases/final_phases.npz",
        "config/resolved.json",
        "checkpoint/latest.npz",
        "events.txt",
        "figures/hidden_chip0.png",
        "model/MLmodel",
    ):
        assert path in arts, path
    _check_readable(client, run, summary, cfg, sqlite_uri)


def _check_readable(client, run, summary: dict, cfg, uri: str) -> None:
    """What the UI shows besides: hidden imperfections as params, the dataset, system metrics,
    per-epoch steps, and the masks as a model that reproduces the twin's test accuracy."""
    params, metrics = run.data.params, run.data.metrics
    assert float(params["hidden.chip1.gamma"]) > 0 and "hidden.chip0.distance_error_m.gap0" in params
    assert "hidden.chip0.phase_screens_rad.layer1.rms" in params
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == "digits" and json.loads(dataset.profile)["classes"] == 10
    assert "system/cpu_utilization_percentage" in metrics and "round/accuracy" not in metrics
    epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy/mean")]
    assert epochs == list(range(1, len(epochs) + 1))  # step = epochs done
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]  # the UI's step slider
    assert any("phase_masks_shared" in path for path in images), images
    mlflow.set_tracking_uri(uri)
    (version,) = client.search_model_versions("name='ffm-smoke'")  # registered: models:/ffm-smoke/1
    assert version.run_id == run.info.run_id
    model = mlflow.pyfunc.load_model(f"models:/ffm-smoke/{version.version}")
    test = load_split(load_config(cfg)).test
    accuracy = float(np.mean(model.predict(test.images) == test.labels))
    assert accuracy == pytest.approx(summary["twin_test_accuracy"], abs=1.01 / len(test.labels))


def test_resume_ends_with_the_same_phases(ray_cluster, tmp_path, sqlite_uri):
    """Interrupted at round 4 (as Ctrl-C), resumed by checkpoint path and by run id: same phases, same run."""
    straight = tmp_path / "straight"
    train(_cfg(straight, uri=sqlite_uri))
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(cut, "debug.interrupt_round=4", uri=sqlite_uri))
    ckpt = cut / "out" / "checkpoints" / "latest.npz"
    assert ckpt.exists() and (cut / "out" / "checkpoints" / "latest.npz.sha256").exists()
    summary = train(_cfg(cut, f"resume={ckpt}", uri=sqlite_uri))
    for k, v in _phases(straight).items():
        np.testing.assert_array_equal(_phases(cut)[k], v)
    client = MlflowClient(sqlite_uri)
    assert len(client.get_metric_history(summary["run_id"], "round/loss")) == 6  # one run, all rounds
    by_id = tmp_path / "byid"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(by_id, "debug.interrupt_round=2", uri=sqlite_uri))
    run_id = checkpoint.load(str(by_id / "out" / "checkpoints" / "latest.npz"))[1]["run_id"]
    assert client.get_run(run_id).info.status == "KILLED"
    train(_cfg(by_id, f"resume={run_id}", uri=sqlite_uri))
    for k, v in _phases(straight).items():
        np.testing.assert_array_equal(_phases(by_id)[k], v)
    assert client.get_run(run_id).info.status == "FINISHED"


def test_crashed_chip_is_restarted_and_the_round_rerun(ray_cluster, tmp_path):
    clean = tmp_path / "clean"
    train(_cfg(clean))
    crashed = tmp_path / "crashed"
    summary = train(_cfg(crashed, "debug=crash", "cluster.round_timeout_s=60"))
    assert any("chip 0 failed" in e for e in summary["events"]), summary["events"]
    assert summary["dropped_chips"] == []
    for k, v in _phases(clean).items():
        np.testing.assert_array_equal(_phases(crashed)[k], v)


def test_dead_chip_fails_the_run_or_is_dropped(ray_cluster, tmp_path):
    dead = ["debug=crash", "cluster.max_restarts=0", "cluster.round_retries=1"]
    with pytest.raises(ChipFailure, match="chip 0 unavailable after 1 retries in round 3"):
        train(_cfg(tmp_path / "fail", *dead))
    summary = train(_cfg(tmp_path / "drop", *dead, "cluster.on_chip_failure=drop"))
    assert summary["dropped_chips"] == [0] and set(summary["chips"]) == {"chip1"}
    assert summary["rounds"] == 6


def test_trainers_deploy_where_they_should(ray_cluster, tmp_path):
    ideal = train(_cfg(tmp_path / "ideal", "trainer=ideal"))
    assert ideal["deployed_on"] == "twin" and list(ideal["chips"]) == ["chip0"]
    ins = train(_cfg(tmp_path / "ins", "trainer=insilico", "topology=single"))
    assert ins["deployed_on"] == "chip" and list(ins["chips"]) == ["chip0"]
    own = train(_cfg(tmp_path / "own", "topology.shared_phases=false"))  # one mask set per chip
    phases = _phases(tmp_path / "own")
    assert set(phases) == {"chip0/phase", "chip1/phase"} and set(own["chips"]) == {"chip0", "chip1"}
    assert not (phases["chip0/phase"] == phases["chip1/phase"]).all()


def test_digits_reach_chips_through_the_object_store(ray_cluster):
    split = load_digits_split(0)
    ref = ray_cluster.put(split)
    assert ray_cluster.get(ref).train.images.shape == split.train.images.shape
