"""MlflowTracker against a real ``mlflow server`` on 127.0.0.1 (no Ray, no training loop):
an outage longer than MLflow's retry window, a leftover spool replayed, a resume logging each
step once, a SIGKILLed driver's run marked FAILED, and a fast probe of an absent server."""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.reports import cli as report_cli
from pipeline.tracking import tracker as tracking
from pipeline.tracking.server import TrackingUnavailable, driver_gone, mark_dead_runs, probe
from pipeline.tracking.tracker import MlflowTracker, TrackingBacklog

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _quiet_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999): while our server is down, no other
    process's bind(0) or outgoing connection can take it, so the restart gets it back."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


class Server:
    """A real `mlflow server` (SQLite backend, proxied artifacts) that can be stopped and started
    again on the same port and backend, like a tracking server going down and coming back."""

    def __init__(self, root):
        self.root, self.port, self.proc = root, _quiet_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Launch and wait until /health answers and our own process says it serves (not another's)."""
        t0, log = time.monotonic(), self.root / "server.log"
        seen, answered = (log.stat().st_size if log.exists() else 0), None
        with open(log, "a") as err:  # the server writes to its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    os.path.join(os.path.dirname(sys.executable), "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.root}/server.db",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        while True:  # a loaded 2-core machine can take a while
            try:
                if urllib.request.urlopen(self.url + "/health", timeout=2).status == 200:
                    if self.proc.poll() is None and "Uvicorn running" in log.read_text()[seen:]:
                        return time.monotonic() - t0
                    answered = answered or time.monotonic()
                    if self.proc.poll() is not None or time.monotonic() - answered > 10:
                        pytest.fail(f"port {self.port} is answered by another process: " + log.read_text()[-2000:])
                    time.sleep(0.3)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() - t0 > 240:
                    pytest.fail("mlflow server did not come up: " + (self.root / "server.log").read_text()[-3000:])
                time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM the server's process group; return once nothing accepts on the port."""
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn / job-runner children
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return
            time.sleep(0.1)
        pytest.fail(f"something still listens on port {self.port} after the server stopped")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.stop()


def _timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


class Rounds:
    """Logs rounds as the driver does (a round's metrics; every 10th a checkpoint and a snapshot,
    every 15th an event), timing each tracking call."""

    def __init__(self, tracker, folder):
        self.tr, self.ckpt = tracker, folder / "latest.npz"
        self.step, self.events, self.snaps, self.ckpt_bytes = 0, [], [], b""

    def log(self, times: list) -> None:
        s, tr = self.step, self.tr
        times.append(_timed(tr.log_round, s, {"loss": 1.0 / (s + 1), "accuracy": s / 100}))
        if s % 10 == 0:
            self.ckpt_bytes = f"checkpoint after round {s}".encode() * 200
            with open(f"{self.ckpt}.tmp", "wb") as f:
                f.write(self.ckpt_bytes)
            os.replace(f"{self.ckpt}.tmp", self.ckpt)  # as checkpoint.save does
            times.append(_timed(tr.log_file, str(self.ckpt), "checkpoint"))
            self.snaps.append(f"snapshots/r{s:03d}.txt")
            times.append(_timed(tr.log_text, f"round {s}", self.snaps[-1]))
        if s % 15 == 0:
            self.events.append(f"event at round {s}")
            times.append(_timed(tr.event, self.events[-1]))
        self.step += 1

    def check(self, client, run_id: str, dl: str) -> None:
        """Every step once and in order, every artifact, the last checkpoint, all events, FINISHED."""
        hist = sorted(client.get_metric_history(run_id, "round/loss"), key=lambda m: (m.timestamp, m.step))
        assert [m.step for m in hist] == list(range(self.step))
        assert [m.value for m in hist] == [1.0 / (s + 1) for s in range(self.step)]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
        assert sorted(a.path for a in client.list_artifacts(run_id, "snapshots")) == self.snaps
        with open(client.download_artifacts(run_id, "checkpoint/latest.npz", dl), "rb") as f:
            assert f.read() == self.ckpt_bytes  # the last checkpoint, not a later change of the file
        with open(client.download_artifacts(run_id, "events.txt", dl)) as f:
            assert f.read().splitlines() == self.events


@pytest.fixture
def short_retries(monkeypatch):
    """MLflow's client retry window shrunk from ~244 s to ~2 s; the spool's own backoff to 0.2-1 s."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    monkeypatch.setattr(MlflowTracker, "SPOOL_BACKOFF_S", (0.2, 1.0))


def test_an_outage_longer_than_the_retry_window_loses_nothing(server, tmp_path, short_retries, capsys):
    client = MlflowClient(server.url)
    tr = MlflowTracker(server.url, "outage", "long-outage", spool_dir=str(tmp_path / "spool"))
    late = MlflowTracker(server.url, "outage", "backlog", spool_dir=str(tmp_path / "late"), flush_timeout_s=1.0)
    run_id, late_id = tr.start({"lr": 0.1}, {"kind": "test"}), late.start({}, {})
    rounds, up, down = Rounds(tr, tmp_path), [], []
    for _ in range(5):
        rounds.log(up)
    server.stop()
    t_down = time.monotonic()
    with pytest.raises(MlflowException):  # what a synchronous logger runs into
        client.search_experiments()
    window = time.monotonic() - t_down
    for s in range(3):
        late.log_round(s, {"loss": float(s)})
    backlog = late.end("FINISHED")  # the server is down: that run waits on disk
    while time.monotonic() - t_down < 3 * window:
        rounds.log(down)
        time.sleep(0.05)
    assert tr.spool.retries >= 1 and tr.spool.pending() > 0
    restart_s = server.start()  # same port, same backend
    outage_s = time.monotonic() - t_down
    for _ in range(5):
        rounds.log(up)
    assert tr.end("FINISHED") is None  # drained within flush_timeout_s
    assert max(down) < 0.5 and max(up) < 0.5  # a local fsync'd write, never the network
    rounds.check(client, run_id, str(tmp_path / "dl"))
    assert not (tmp_path / "spool").exists()  # drained: removed
    _check_backlog_replays(client, backlog, late_id, tmp_path / "late", capsys)
    with capsys.disabled():
        print(
            f"\n[outage] retry window {window:.1f} s, outage {outage_s:.1f} s (restart {restart_s:.1f} s); "
            f"log call up: median {statistics.median(up) * 1e3:.1f} ms, max {max(up) * 1e3:.1f} ms; "
            f"down: median {statistics.median(down) * 1e3:.1f} ms, max {max(down) * 1e3:.1f} ms; "
            f"{rounds.step} rounds"
        )


def _check_backlog_replays(client, backlog, run_id: str, spool, capsys) -> None:
    """end() reported one line naming the spool and the command; that command sends the rest."""
    assert isinstance(backlog, TrackingBacklog) and backlog.pending >= 4
    line = str(backlog)
    assert "\n" not in line and f"ffm-report replay {spool}" in line
    assert client.get_run(run_id).info.status == "RUNNING"
    assert report_cli.main(["replay", str(spool)]) == 0
    assert f"sent {backlog.pending} records" in capsys.readouterr().out
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "round/loss")] == [0, 1, 2]
    assert not spool.exists()


def test_a_resume_logs_each_step_once_and_appends_events(server, tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "HEARTBEAT_S", 0.5)
    client = MlflowClient(server.url)
    first = MlflowTracker(server.url, "resume", "r", spool_dir=str(tmp_path / "s1"))
    first.event("topology: 2 chips")
    run_id = first.start({"lr": 0.1}, {})
    for s in range(10):
        first.log_round(s, {"loss": float(s)})
    first.event("chip 1 restarted")
    first.log_metrics({"val_accuracy/mean": 0.5}, step=9)
    beat = client.get_run(run_id).data.tags["driver.heartbeat"]
    assert first.spool.flush(60)
    time.sleep(2.1)
    assert client.get_run(run_id).data.tags["driver.heartbeat"] > beat  # the drain thread beats
    first.spool.close()  # the driver dies here: no end()
    first.spool = None

    second = MlflowTracker(server.url, "resume", "r", spool_dir=str(tmp_path / "s2"))
    second.event("topology: 2 chips (resumed)")  # before start, as make_topology does
    assert second.start({"lr": 0.1}, {}, run_id=run_id) == run_id
    for s in range(6, 14):  # the checkpoint was at round 6: rounds 6-9 again
        second.log_round(s, {"loss": float(s)})
    second.log_metrics({"val_accuracy/mean": 0.5}, step=9)
    second.log_metrics({"val_accuracy/mean": 0.7}, step=13)
    second.event("done")
    assert second.end() is None
    assert [m.step for m in client.get_metric_history(run_id, "round/loss")] == list(range(14))
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy/mean")] == [9, 13]
    with open(client.download_artifacts(run_id, "events.txt", str(tmp_path))) as f:
        ev = f.read().splitlines()
    assert ev == ["topology: 2 chips", "chip 1 restarted", "topology: 2 chips (resumed)", "done"]
    assert client.get_run(run_id).info.status == "FINISHED"


DOOMED = """
import sys, time
from pipeline.tracking.tracker import MlflowTracker
t = MlflowTracker(sys.argv[1], "dead-driver", "doomed", spool_dir=sys.argv[2])
run_id = t.start({}, {})
t.log_round(0, {"loss": 0.0})
t.event("started")
assert t.spool.flush(60)
t.spool._stop.set()                # the drain thread stops: what follows stays on disk only,
with t.spool._cond:                # as when a driver dies before its spool caught up
    t.spool._cond.notify_all()
t.spool._thread.join(10)
for s in range(1, 5):
    t.log_round(s, {"loss": float(s)})
with open(sys.argv[3], "wb") as f:
    f.write(b"checkpoint of round 4")
t.log_file(sys.argv[3], "checkpoint")
t.event("checkpoint at round 4")
print(run_id, flush=True)
time.sleep(600)
"""


def _doomed_driver(url: str, spool, ckpt) -> tuple[str, int]:
    """A driver in its own process that starts a run, leaves records in its spool, and is SIGKILLed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", DOOMED, url, str(spool), str(ckpt)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the driver subprocess did not start its run"
    finally:
        proc.kill()  # SIGKILL: no end(), no cleanup
        proc.wait(timeout=30)
    return run_id, proc.pid


def test_a_killed_drivers_run_is_marked_failed_then_resumed_from_its_spool(server, tmp_path):
    client = MlflowClient(server.url)
    spool = tmp_path / "out" / "tracking-spool"
    doomed, pid = _doomed_driver(server.url, spool, tmp_path / "latest.npz")
    exp_id = client.get_experiment_by_name("dead-driver").experiment_id
    foreign = client.create_run(exp_id).info.run_id  # no driver tags (e.g. a sweep's parent): left alone
    assert client.get_run(doomed).info.status == "RUNNING"
    nxt = MlflowTracker(server.url, "dead-driver", "next", spool_dir=str(tmp_path / "next-spool"))
    live = nxt.start({}, {})  # the next start on this host notices
    run = client.get_run(doomed)
    assert run.info.status == "FAILED" and f"driver pid {pid} on" in run.data.tags["driver.lost"]
    assert client.get_run(foreign).info.status == "RUNNING"
    assert mark_dead_runs(server.url, "dead-driver") == []  # the live driver (this process) stays
    assert client.get_run(live).info.status == "RUNNING" and nxt.end() is None

    again = MlflowTracker(server.url, "dead-driver", "doomed", spool_dir=str(spool))  # same output folder
    assert [m.step for m in client.get_metric_history(doomed, "round/loss")] == [0]
    again.download(doomed, "checkpoint", str(tmp_path / "dl"))  # the spool's leftovers go first
    assert (tmp_path / "dl" / "checkpoint" / "latest.npz").read_bytes() == b"checkpoint of round 4"
    again.start({}, {}, run_id=doomed)
    for s in range(3, 7):  # resumed from an older checkpoint: 3 and 4 again
        again.log_round(s, {"loss": float(s)})
    again.event("resumed")
    assert again.end() is None
    assert [m.step for m in client.get_metric_history(doomed, "round/loss")] == list(range(7))
    with open(client.download_artifacts(doomed, "events.txt", str(tmp_path))) as f:
        ev = f.read().splitlines()
    assert ev == ["started", "checkpoint at round 4", "resumed"]
    run = client.get_run(doomed)
    assert run.info.status == "FINISHED" and "driver.lost" not in run.data.tags


def test_a_silent_driver_on_another_host_is_dead_after_the_stale_time():
    old = {"driver.host": "elsewhere", "driver.pid": "7", "driver.heartbeat": str(int(time.time()) - 3600)}
    assert "no heartbeat" in driver_gone(old, 0, stale_s=600)
    assert driver_gone(old | {"driver.heartbeat": str(int(time.time()))}, 0, stale_s=600) is None
    assert driver_gone({"mlflow.runName": "x"}, 0) is None


def test_probe_fails_fast_with_one_line(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(TrackingUnavailable) as exc:
        probe("http://127.0.0.1:1", timeout_s=5.0)
    assert time.monotonic() - t0 < 5.5
    msg = str(exc.value)
    assert "\n" not in msg and "MLFLOW_TRACKING_URI" in msg and "tracking.uri" in msg and "127.0.0.1:1" in msg
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
        with pytest.raises(TrackingUnavailable):
            probe(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.0)
        assert time.monotonic() - t0 < 3.5
    probe(f"sqlite:///{tmp_path}/mlflow.db")
    probe(f"sqlite:///{tmp_path}/missing/mlflow.db")  # a folder the tracker will create
    (tmp_path / "a-file").write_text("")
    with pytest.raises(TrackingUnavailable, match="tracking.uri"):
        probe(f"sqlite:///{tmp_path}/a-file/missing/mlflow.db")
