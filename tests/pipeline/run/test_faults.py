"""Fault injection on the real local Ray cluster and a real `mlflow server`.

Each faulty run must end bitwise equal to the same run without faults: the noise is keyed
by (chip seed, round, pass, sample), so a re-run round reproduces what was lost.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import compose, mlflow_server_at
from mlflow.tracking import MlflowClient

from pipeline import train

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")
SMOKE = ["debug=smoke", "cluster.round_timeout_s=120", "cluster.max_restarts=8"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real tracking server for the module."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server_at(str(folder)) as (url, _):
        yield url


def _phases(out) -> dict:
    with np.load(os.path.join(out, "phases.npz")) as z:
        return {k: z[k] for k in z.files}


def _same_run(a: str, b: str) -> None:
    """Bitwise-equal trained phases and identical test accuracies."""
    pa, pb = _phases(a), _phases(b)
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])
    sa, sb = (json.load(open(os.path.join(d, "summary.json"))) for d in (a, b))
    assert {k: v["test_accuracy"] for k, v in sa["chips"].items()} == {
        k: v["test_accuracy"] for k, v in sb["chips"].items()
    }
    assert sa["twin_test_accuracy"] == sb["twin_test_accuracy"]


def crash_points(seed: int) -> list[str]:
    """Five seeded crash points of a 6-round smoke run on two chips: three training rounds,
    one during validation (round 6) and one during the final test (round 7)."""
    rng = np.random.default_rng(seed)
    rounds = rng.choice(12, size=3, replace=False)
    chips = rng.integers(0, 2, size=2)
    return [f"{int(r) % 2}:round:{int(r) // 2}" for r in sorted(rounds)] + [f"{chips[0]}:val:6", f"{chips[1]}:test:7"]


def test_chip_killed_five_times_ends_bitwise_equal(ray_cluster, tmp_path, server):
    points = crash_points(seed=20261201)
    print("crash points (chip:call:round):", points)
    uri = f"tracking.uri='{server}'"
    clean = train(compose(*SMOKE, uri, f"output_dir={tmp_path}/clean"))
    faulty = train(
        compose(
            *SMOKE,
            uri,
            f"output_dir={tmp_path}/faulty",
            "debug.crash_points=[" + ",".join(f"'{p}'" for p in points) + "]",
        )
    )
    failures = [e for e in faulty["events"] if "failed" in e]
    assert len(failures) == 5, faulty["events"]  # each death counted once, never the restart
    assert faulty["dropped_chips"] == [] and clean["events"] == []
    _same_run(f"{tmp_path}/clean", f"{tmp_path}/faulty")
    client = MlflowClient(server)
    for s in (clean, faulty):
        assert client.get_run(s["run_id"]).info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(s["run_id"], "round/loss")] == list(range(1, 7))


def test_layer_pipeline_survives_a_killed_stage(ray_cluster, tmp_path):
    base = [*SMOKE, "tracking=none", "topology=pipeline", "topology.n_chips=2", "topology.chip_seeds=[1,2]"]
    train(compose(*base, f"output_dir={tmp_path}/clean"))
    faulty = train(
        compose(*base, f"output_dir={tmp_path}/faulty", "debug.crash_points=['1:round:2','0:round:4','1:val:6']")
    )
    assert sum("re-running it on every stage" in e for e in faulty["events"]) == 3, faulty["events"]
    _same_run(f"{tmp_path}/clean", f"{tmp_path}/faulty")


def _ffm_train(args: list[str], tmp_path, address: str) -> subprocess.CompletedProcess:
    """ffm-train in its own process, its chips on the session's cluster (one cluster per session)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    return subprocess.run(
        [BIN, *args, "cluster=address", f"cluster.address={address}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )


def test_driver_sigkill_then_resume_logs_each_step_once(ray_cluster, tmp_path, server):
    address = ray_cluster.get_runtime_context().gcs_address
    common = [*SMOKE, f"tracking.uri={server}", "checkpoint_every=2"]
    clean = _ffm_train([*common, f"output_dir={tmp_path}/clean"], tmp_path, address)
    assert clean.returncode == 0, clean.stderr[-3000:]
    killed = _ffm_train([*common, f"output_dir={tmp_path}/cut", "debug.kill_round=5"], tmp_path, address)
    assert killed.returncode == -9, killed.stderr[-3000:]
    ckpt = tmp_path / "cut" / "checkpoints" / "latest.npz"
    assert ckpt.exists()
    client = MlflowClient(server)
    exp = client.get_experiment_by_name("ffm-optics")
    cut_run = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.params.get("output_dir") == f"{tmp_path}/cut"
    ][0]
    assert cut_run.info.status == "RUNNING"  # nobody could mark it: the driver is gone
    resumed = _ffm_train([*common, f"output_dir={tmp_path}/cut", f"resume={cut_run.info.run_id}"], tmp_path, address)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_run(f"{tmp_path}/clean", f"{tmp_path}/cut")
    run = client.get_run(cut_run.info.run_id)
    assert run.info.status == "FINISHED"
    for key in ("round/loss", "round/batch_accuracy", "round/grad_norm"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, 7)), key
    events = client.download_artifacts(run.info.run_id, "events.txt", str(tmp_path))
    assert "resumed" in open(events).read()


def test_a_chip_constructor_error_is_one_line_with_the_actors_own_text(ray_cluster):
    """A chip that cannot be built on its host (no CuPy there) fails at the ping after creation
    with its own error, not as a chip 'unavailable after retries' half a minute later."""
    import dataclasses

    from pipeline.config import load_config
    from pipeline.run.build import load_split, make_plan, make_workers
    from pipeline.run.rounds import ChipError
    from pipeline.run.topologies import make_topology

    cfg = load_config(compose("debug=smoke", "tracking=none"))
    split = load_split(cfg)
    plan = make_plan(cfg, split.n_classes, len(split.train))
    plan = dataclasses.replace(plan, chips=tuple(dataclasses.replace(c, backend="cupy") for c in plan.chips))
    with pytest.raises(ChipError) as err:
        make_topology(plan, cfg, split, ray_cluster.put(split), print, make_workers)
    line = str(err.value)
    assert "\n" not in line and line.startswith("chip ") and "ping" in line
    assert "CuPy" in line or "cupy" in line, line
