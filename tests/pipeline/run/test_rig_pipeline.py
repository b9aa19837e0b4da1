"""chip=rig through the pipeline: a rig chip's worker (counters, calibrations, faults) on an emulated
rig over TCP; scheduling on ``optical_chip`` and exclusive claims on the session's Ray cluster;
and ``ffm-train chip=rig`` end to end, in its own process with its own local cluster."""

import dataclasses
import json
import math
import os
import re
import sys
import time
from subprocess import run

import numpy as np
import pytest
from conftest import compose
from mlflow.tracking import MlflowClient

from optics.rig.emulator import answers, free_port, start_emulated_rig
from pipeline.config import ConfigError, load_config
from pipeline.errors import explain
from pipeline.run.actors import ChipFault, ChipWorker
from pipeline.run.build import HardwareHeld, attach_hardware, check_cluster, load_split, make_plan, make_workers
from pipeline.run.coordinator import Target
from pipeline.run.rounds import stop_actors

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")
SMALL_TASK = ("task.val_fraction=0.02", "task.test_fraction=0.03")  # 36 validation and 54 test digits
K = 3  # frames per shot: the 3-step scheme


def _cfg(*overrides):
    return load_config(compose("chip=rig", "tracking=none", *SMALL_TASK, *overrides))


def _planned(cfg):
    split = load_split(cfg)
    return make_plan(cfg, split.n_classes, len(split.train)), split


def _pi(plan) -> dict:
    return {"phase": np.full(plan.geometry.phase_shape, np.pi)}


def test_a_rig_worker_reports_what_its_rig_counted_and_calibrated():
    """Frames per round follow the measurement model: 2 L hops x B samples x K phase steps, plus the
    drift probes (before the data and the error pass), plus K per saturated shot taken again."""
    plan, split = _planned(_cfg())
    with attach_hardware(plan) as plan:
        worker = ChipWorker(plan.chips[0], split, plan.objective)  # connects, checks, calibrates
        report = worker.hardware_report(4)
        names = [c["name"] for c in report["calibrations"]]
        assert {"reference", "exposure", "throughput", "registration", "response"} <= set(names)
        assert report["counters"]["frames"] == sum(c["frames"] for c in report["calibrations"]) > 0
        seconds = report["seconds_per_sample"]
        assert seconds["train"] > seconds["infer"] > 0  # a data and an error pass against a data pass
        shard, layers = np.arange(4), plan.geometry.n_layers
        result = worker.run_round(_pi(plan), 1, shard, 0, Target.CHIP, fidelity=True)
        assert result.fidelity_cosine is None  # a rig has no noise-free oracle
        assert [c["name"] for c in result.calibrations] == ["drift", "drift"]
        c = result.counters
        extra = c["frames"] - sum(d["frames"] for d in result.calibrations) - 2 * layers * len(shard) * K
        assert extra == 0 if c["retakes"] == 0 else 0 <= extra <= K * c["retakes"]
        assert c["slm_writes"] > 0 and c["rig_seconds"] > 0 and c["retries"] == 0
        val = worker.evaluate(_pi(plan), 1, "val", 0, Target.CHIP, 64)
        assert val.counters["frames"] - K * val.counters["retakes"] <= len(split.val) * layers * K
        assert val.counters["frames"] >= len(split.val) * layers * K  # every sample, every hop, no probes
        twin = worker.evaluate(_pi(plan), 1, "val", 0, Target.TWIN, 64)
        assert twin.counters["frames"] == 0 and worker.reveal() == {}


def test_a_frame_that_never_comes_is_a_chip_fault_and_the_same_round_runs_again():
    """The rig retries a frame ``rig.frame_retries`` times; past that the worker raises ChipFault
    (one line), which the fault path re-runs with the same inputs, as for a crashed chip."""
    plan, split = _planned(_cfg())
    with attach_hardware(plan) as attached:
        startup = ChipWorker(attached.chips[0], split, plan.objective).hardware_report(4)["counters"]["frames"]
    first = int(startup) + 5  # inside the first round's data pass (its drift probe takes 3 frames first)
    frames = ",".join(str(first + k) for k in range(4))  # 4 failures in a row: more than 3 retries
    plan, split = _planned(_cfg(f"rig.emulator.fault_frames=[{frames}]"))
    with attach_hardware(plan) as plan:
        worker = ChipWorker(plan.chips[0], split, plan.objective)
        worker.hardware_report(4)
        with pytest.raises(ChipFault, match=r"^RigFault: rig: frame of camera failed 4 times") as e:
            worker.run_round(_pi(plan), 1, np.arange(4), 0, Target.CHIP)
        assert "\n" not in str(e.value)
        again = worker.run_round(_pi(plan), 1, np.arange(4), 0, Target.CHIP)
        assert np.isfinite(again.grads["phase"]).all()
        assert again.counters["retries"] == 3  # the failed attempt's frames are reported with the next


def _demands(ray) -> list[dict]:
    from ray.autoscaler.v2.sdk import get_cluster_status

    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    return [b.bundle for d in status.resource_demands.ray_task_actor_demand for b in d.bundles_by_count]


def _until(found, what: str, limit_s: float = 120.0):
    """Poll ``found()`` until it returns something (the cluster reports on its own schedule)."""
    deadline = time.monotonic() + limit_s
    while (value := found()) is None:
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.5)
    return value


def test_a_rig_chip_is_not_scheduled_where_no_optical_chip_is(ray_cluster):
    from ray._private.state import actors

    address = f"127.0.0.1:{free_port()}"  # nothing answers there: the actor must never get to connect
    cfg = _cfg(f"rig.address={address}")
    plan, split = _planned(cfg)
    with pytest.raises(ConfigError, match="chip.resources.optical_chip: 1 chips need 1 optical_chip in all but"):
        check_cluster(cfg)  # the driver refuses before any actor
    workers = make_workers(plan, cfg, ray_cluster.put(split))  # as with cluster.check_resources=false
    try:
        bundle = _until(lambda: next((b for b in _demands(ray_cluster) if "optical_chip" in b), None), "the demand")
        assert bundle == {"CPU": 1.0, "optical_chip": 1.0}  # waiting for a node with a rig, not placed
        info = actors(actor_id=workers[0]._actor_id.hex())
        assert (info["State"], info["Name"]) == ("PENDING_CREATION", f"rig@{address}")
    finally:
        stop_actors(workers)


def _released(ray, name: str) -> bool | None:
    from pipeline.chips.base import CLAIMS_NAMESPACE

    try:
        ray.get_actor(name, namespace=CLAIMS_NAMESPACE)
    except ValueError:
        return True
    return None


def test_a_second_claim_of_a_rig_is_refused_and_nothing_half_claimed_stays(ray_cluster):
    address = f"127.0.0.1:{free_port()}"
    cfg = _cfg(f"rig.address={address}")
    plan, split = _planned(cfg)
    ref = ray_cluster.put(split)
    first = make_workers(plan, cfg, ref)
    try:
        with pytest.raises(HardwareHeld) as e:
            make_workers(plan, cfg, ref)
        line = str(e.value)
        assert line.startswith(f"rig {address} is held by another run (Ray actor rig@{address}") and "\n" not in line
        assert explain(e.value) == line  # what ffm-train prints before exiting with 2
        twice = dataclasses.replace(plan, chips=plan.chips * 2)  # two chips of one run on one rig
    finally:
        stop_actors(first)
    _until(lambda: _released(ray_cluster, f"rig@{address}"), "the claim released")
    with pytest.raises(HardwareHeld):
        make_workers(twice, cfg, ref)
    _until(lambda: _released(ray_cluster, f"rig@{address}"), "the first of two chips stopped with the refusal")


@pytest.mark.slow
def test_a_second_run_on_a_held_rig_exits_with_one_line(ray_cluster, tmp_path):
    """Another ffm-train on the same cluster asks for the rig this test holds: refused in one line."""
    with start_emulated_rig(_emulator_spec()) as rig:
        cfg = _cfg(f"rig.address={rig.address}")
        plan, split = _planned(cfg)
        held = make_workers(plan, cfg, ray_cluster.put(split))
        try:
            args = [BIN, "chip=rig", f"rig.address={rig.address}", "tracking=none", *SMALL_TASK]
            gcs = ray_cluster.get_runtime_context().gcs_address
            args += ["cluster=address", f"cluster.address={gcs}", "cluster.check_resources=false"]
            args += [f"output_dir={tmp_path}/second"]
            env = {**os.environ, "RAY_AUTH_MODE": "token"}
            env.pop("FFM_TRACEBACK", None)
            p = run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
        finally:
            stop_actors(held)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-3000:]
    held_line = f"ffm-train: error: rig {rig.address} is held by another run (Ray actor rig@{rig.address}"
    assert lines[0].startswith(held_line)
    assert not (tmp_path / "second").exists()  # refused before anything was written


def _emulator_spec():
    from optics.diffractive.geometry import Geometry
    from optics.rig.emulator import EmulatorSpec

    return EmulatorSpec(geometry=Geometry.small(), seed=1)


def _history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


@pytest.mark.slow
def test_ffm_train_chip_rig_trains_an_emulated_rig_logs_it_and_stops_it(tmp_path):
    """One command: the emulated rig starts on 127.0.0.1, the run's local cluster advertises its
    optical_chip, a frame fault in round 0 is re-run, MLflow gets the rig's counters per round,
    every calibration and the projected epoch (also printed), and the rig is stopped afterwards."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [BIN, "chip=rig", f"tracking.uri={uri}", "tracking.log_images=false", *SMALL_TASK]
    args += ["trainer.epochs=1", "trainer.max_rounds=3", "trainer.batch_size=8", "trainer.eval_batch_size=64"]
    args += [f"output_dir={tmp_path}/out", "cluster.num_cpus=2", "rig.emulator.fault_frames=[100,101,102,103]"]
    env = {k: v for k, v in os.environ.items() if k != "FFM_TRACEBACK"}
    p = run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    events = "\n".join(summary["events"])
    assert summary["rounds"] == 3 and summary["chips"]["chip0"]["resources"]["optical_chip"] == 1.0
    address = re.search(r"chip 0: rig at (127\.0\.0\.1:\d+) \(emulated", events).group(1)
    host, _, port = address.rpartition(":")
    assert not answers(host, int(port), timeout_s=2.0)  # stopped with the run
    assert re.search(r"round 0: chip 0 failed \(chip fault: ChipFault: RigFault: .*\); re-running it", events)
    client = MlflowClient(uri)
    rid = summary["run_id"]
    assert client.get_run(rid).info.status == "FINISHED"
    frames = _history(client, rid, "round/rig/frames")
    assert sorted(frames) == [1, 2, 3] and min(frames.values()) > 0
    assert _history(client, rid, "round/rig/retries")[1] >= 3  # the failed attempt's, reported with round 0
    assert sorted(_history(client, rid, "calibration/chip0/drift/drift_rad")) == [1, 2, 3]
    metrics = client.get_run(rid).data.metrics
    startup = [v for k, v in metrics.items() if re.fullmatch(r"calibration/chip0/(?!drift)[a-z_0-9]+/frames", k)]
    assert sum(startup) == _history(client, rid, "startup/rig/frames")[0] > 0  # start-up frames: calibrations
    assert "calibration/chip0/registration/shift_y_px" in metrics and "calibration/chip0/response/gamma" in metrics
    split = load_split(_cfg())
    rounds, n_eval = math.ceil(len(split.train) / 8), len(split.val) + len(split.test)
    projected = rounds * 8 * metrics["rig/seconds_per_train_sample"] + n_eval * metrics["rig/seconds_per_infer_sample"]
    assert metrics["rig/projected_epoch_s"] == pytest.approx(projected, rel=1e-12)
    assert re.search(rf"ffm-train: rig time: .* per epoch projected \({rounds} rounds x 8 samples", p.stdout)
    assert metrics["val_rig/frames"] > 0 and metrics["final_test_rig/frames"] > 0
