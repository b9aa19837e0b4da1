"""Hyperparameter search (pipeline.search): the space's checks, placing trials on the cluster,
and a reduced search on the real local Ray cluster with Ray Tune, Optuna and ASHA, each trial a
child run in a real MLflow store."""

import csv
import os
import subprocess
import sys

import pytest
from conftest import compose
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from pipeline.config import ConfigError, load_config
from pipeline.search.runner import concurrency, run_search, search_fingerprint
from pipeline.search.space import check_search, default_point, flatten, parse_space


def _raw(tmp_path, *overrides, space=None):
    raw = OmegaConf.to_container(
        compose(
            "hparams_search=ffm_lr_temperature",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"search.root={tmp_path}/search",
            *overrides,
        ),
        resolve=True,
    )
    if space is not None:
        raw["search"]["space"] = space
    return raw


def _cfg(tmp_path, *overrides, space=None):
    return load_config(_raw(tmp_path, *overrides, space=space))


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "search.space is empty"),
        ({"trainer.lrr": {"type": "uniform", "low": 0.1, "high": 0.2}}, "unknown key 'lrr'"),
        ({"trainer.lr": {"type": "uniform", "low": 0.2, "high": 0.2}}, "range is empty"),
        ({"trainer.lr": {"type": "loguniform", "low": 0.0, "high": 0.2}}, "needs low > 0"),
        ({"trainer.lr": {"type": "uniform", "low": -1.0, "high": 0.2}}, "the value -1.0 is refused"),
        ({"trainer.lr": {"type": "gauss", "low": 0.1, "high": 0.2}}, "type: loguniform|uniform|int|choice"),
        ({"trainer.lr": {"type": "uniform", "low": 0.1, "hi": 0.2}}, "unknown field"),
        ({"trainer.optimizer": {"type": "choice", "values": []}}, "non-empty list"),
        ({"trainer.optimizer": {"type": "choice", "values": ["adam", "lbfgs"]}}, "lbfgs"),
        ({"trainer.batch_size": {"type": "int", "low": 8, "high": 16.5}}, "whole bounds"),
    ],
)
def test_a_bad_space_is_one_line_naming_the_key(tmp_path, space, message):
    raw = _raw(tmp_path)
    cfg = load_config(raw)
    with pytest.raises(ConfigError, match=message.replace("|", r"\|").replace("(", r"\(")):
        parse_space(space, raw)
    assert cfg.search.name == "ffm_lr_temperature"


def test_a_space_from_the_command_line_is_flattened_and_its_defaults_are_trial_zero(tmp_path):
    nested = {"trainer": {"lr": {"type": "loguniform", "low": 0.01, "high": 0.5}}}
    assert flatten(nested) == {"trainer.lr": {"type": "loguniform", "low": 0.01, "high": 0.5}}
    raw = _raw(tmp_path, space=nested)
    params = check_search(load_config(raw).search, raw)
    assert [(p.key, p.kind, p.low, p.high) for p in params] == [("trainer.lr", "loguniform", 0.01, 0.5)]
    assert default_point(params, raw) == {"trainer.lr": 0.1}


def test_asha_needs_epochs_to_stop_at_and_a_budget(tmp_path):
    raw = _raw(tmp_path, "search.grace_epochs=5", "trainer.epochs=4")
    with pytest.raises(ConfigError, match="search.grace_epochs=5 is more than trainer.epochs=4"):
        check_search(load_config(raw).search, raw)
    with pytest.raises(ConfigError, match="search.trials"):
        _cfg(tmp_path, "search.trials=0")


def test_trial_zero_must_lie_in_the_space_and_epochs_are_not_searched(tmp_path):
    def check(*overrides, space):
        raw = _raw(tmp_path, *overrides, space=space)
        return check_search(load_config(raw).search, raw)

    outside = {"trainer.lr": {"type": "uniform", "low": 0.2, "high": 0.3}}  # the default lr is 0.1
    with pytest.raises(ConfigError, match="own value 0.1 .trial 0. is outside the space.*default_first=false"):
        check(space=outside)
    assert [p.key for p in check("search.default_first=false", space=outside)] == ["trainer.lr"]
    unset = {"chip.hardware.slm_bits": {"type": "int", "low": 6, "high": 8}}  # a free-form key the config leaves unset
    with pytest.raises(ConfigError, match="chip.hardware.slm_bits: the configuration's own value None"):
        check(space=unset)
    with pytest.raises(ConfigError, match="search.space.trainer.epochs: ASHA"):
        check(space={"trainer.epochs": {"type": "int", "low": 2, "high": 4}})
    with pytest.raises(ConfigError, match="search.name=ffm_lr_temperature and sweep.name=x"):
        _cfg(tmp_path, "sweep.name=x", "sweep.seeds=[1]", "sweep.trainers=[ffm]")


def test_the_report_survives_choices_of_any_type(tmp_path):
    from pipeline.search import report

    rows = [
        {"number": i, "trial": f"t{i}", "status": "finished", "val_accuracy": v, "test_accuracy": v, "epochs": 2}
        | {"trainer.train_amplitude": flag, "chip.only": only}
        for i, (v, flag, only) in enumerate(
            [(0.5, True, None), (0.7, False, "slm"), (0.6, True, "slm"), (0.2, False, None)]
        )
    ]
    keys = ["trainer.train_amplitude", "chip.only"]
    assert set(report.param_importances(rows, keys)) <= set(keys)
    files = report.write_report(rows, keys, str(tmp_path / "report"), "t")
    assert all(os.path.getsize(f) > 0 for f in files)
    assert report.last_line(ValueError()) == "ValueError"


def test_trials_are_placed_by_the_chips_they_hold(tmp_path):
    cfg = _cfg(tmp_path)  # one 1-CPU chip per trial
    assert concurrency(cfg, {"CPU": 2.0}) == 2
    assert concurrency(cfg, {"CPU": 16.0}) == 16  # at most the number of trials
    with pytest.raises(ConfigError, match="search.max_concurrent=3 but the cluster places 2"):
        concurrency(_cfg(tmp_path, "search.max_concurrent=3"), {"CPU": 2.0})
    with pytest.raises(ConfigError, match="one trial needs"):
        concurrency(cfg, {"CPU": 0.5})


def test_the_fingerprint_ignores_where_and_how_a_search_is_interrupted(tmp_path):
    a = _raw(tmp_path)
    b = _raw(tmp_path, "search.kill_after_trials=2", "search.resume=never")
    b["search"]["root"] = "/elsewhere"
    assert search_fingerprint(a) == search_fingerprint(b)
    assert search_fingerprint(a) != search_fingerprint(_raw(tmp_path, "search.seed=1"))


BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")
# 4 trials of the search's own space (learning rate and temperature), 2 epochs of 10 rounds, one
# trial at a time: ASHA's decisions and TPE's suggestions then follow from the results alone
REDUCED = [
    "search.trials=4",
    "search.max_concurrent=1",
    "search.startup_trials=2",
    "trainer.epochs=2",
    "trainer.batch_size=128",
    "trainer.eval_batch_size=512",
    "trainer.fidelity_every=0",
]


def _search_process(folder, address: str, *extra) -> subprocess.CompletedProcess:
    """ffm-train hparams_search=... in its own process, its trials on the session's cluster."""
    folder.mkdir(exist_ok=True)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "TUNE_GLOBAL_CHECKPOINT_S": "0"}  # Tune saves its state often
    args = [BIN, "hparams_search=ffm_lr_temperature", *REDUCED, f"tracking.uri=sqlite:///{folder}/mlflow.db"]
    args += [f"search.root={folder}/search", "cluster=address", f"cluster.address={address}", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=folder, env=env)


def _finished(rows: list[dict]) -> list[tuple]:
    keys = ("trainer.lr", "trainer.temperature", "val_accuracy", "test_accuracy")
    return [tuple(float(r[k]) for k in keys) for r in rows if r["status"] == "finished"]


@pytest.mark.slow
def test_a_search_stops_hopeless_trials_reports_the_best_and_resumes_after_its_driver_is_killed(ray_cluster, tmp_path):
    result = run_search(_cfg(tmp_path / "clean", *REDUCED))  # uninterrupted, in this process
    rows = result["rows"]
    assert len(rows) == 4 and (rows[0]["trainer.lr"], rows[0]["trainer.temperature"]) == (0.1, 0.003)  # defaults
    statuses = [r["status"] for r in rows]
    assert "failed" not in statuses and "stopped early" in statuses and "finished" in statuses
    _check_tracking(result, rows)

    address = ray_cluster.get_runtime_context().gcs_address
    killed = _search_process(tmp_path / "cut", address, "search.kill_after_trials=2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = _search_process(tmp_path / "cut", address)  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    report = next((tmp_path / "cut" / "search").glob("*/report/trials.csv"))
    with open(report, newline="") as f:
        cut = [
            {**r, **{k: float(r[k]) for k in ("trainer.lr", "val_accuracy", "test_accuracy") if r[k]}}
            for r in csv.DictReader(f)
        ]
    assert _finished(cut) == _finished(rows), killed.stdout + resumed.stdout  # the same trials, bit for bit
    client = MlflowClient(f"sqlite:///{tmp_path}/cut/mlflow.db")
    for run in client.search_runs([client.get_experiment_by_name("ffm-search").experiment_id]):
        if "search.trial" in run.data.tags:  # no trial trained an epoch twice
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy/mean")]
            assert len(steps) == len(set(steps)), run.info.run_name


def _check_tracking(result: dict, rows: list[dict]) -> None:
    client = MlflowClient(result["tracking_uri"])
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['parent_run_id']}'")
    assert len(children) == len(rows)
    by_status = {r.data.tags["search.status"]: r.info.status for r in children}
    assert by_status["finished"] == "FINISHED" and by_status["stopped early"] == "KILLED"
    best = max((r for r in rows if r["status"] == "finished"), key=lambda r: r["val_accuracy"])
    assert parent.data.tags["search.best_trial"] == best["trial"]
    assert parent.data.metrics["search/best_test_accuracy"] == pytest.approx(best["test_accuracy"])
    assert best["test_accuracy"] > 0.5  # a learning rate that learns was found and tested
    artifacts = {a.path for a in client.list_artifacts(result["parent_run_id"], "report")}
    assert {"report/trials.csv", "report/trials.md", "report/search.png"} <= artifacts
    with open(result["report"][0], newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


@pytest.mark.slow
def test_the_best_configuration_is_promoted_to_an_emulated_rig_and_its_frames_counted(tmp_path):
    """Two 3-round trials on the simulated chip, then the best one trained again on an emulated
    rig over TCP (its own local cluster, which advertises the rig's optical_chip)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [BIN, "hparams_search=ffm_lr_temperature", "search.trials=2", "search.max_concurrent=1"]
    args += ["search.top_k=1", "trainer.epochs=1", "trainer.max_rounds=3", "trainer.batch_size=8"]
    args += ["trainer.eval_batch_size=64", "task.val_fraction=0.02", "task.test_fraction=0.03"]
    args += [f"tracking.uri={uri}", f"search.root={tmp_path}/search", "cluster.num_cpus=2"]
    env = {k: v for k, v in os.environ.items() if k != "FFM_TRACEBACK"}
    p = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    (promotion,) = list((tmp_path / "search").glob("*/report/promotion.csv"))
    with open(promotion, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["rig_frames"]) > 0 and 0.0 <= float(row["rig_test_accuracy"]) <= 1.0
    client = MlflowClient(uri)
    rig_run = client.get_run(row["run_id"])
    assert rig_run.info.status == "FINISHED" and rig_run.data.tags["search.promoted_from"] == row["trial"]
    assert rig_run.data.params["chip.kind"] == "rig"
    parent = client.get_run(rig_run.data.tags["mlflow.parentRunId"])
    assert parent.data.metrics[f"promoted/{row['trial']}/frames"] == float(row["rig_frames"])
    assert "rig frames" in p.stdout
