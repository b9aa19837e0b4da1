"""The tracking spool on its own (fake senders, no MLflow): order, durability, exactly-once replay."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pipeline.tracking.spool import Rejected, Spool, SpoolBusy, replay

FAST = {"backoff_s": (0.01, 0.05)}


class Flaky:
    """A sender that fails (like a server that is down) until ``up`` is set, then records."""

    def __init__(self, up: bool = True):
        self.up, self.calls, self.got, self.groups, self.maybe = threading.Event(), 0, [], [], []
        if up:
            self.up.set()

    def __call__(self, records, maybe_sent):
        self.calls += 1
        if not self.up.is_set():
            raise ConnectionError("server down")
        self.groups.append([r["seq"] for r in records])
        self.maybe.append(maybe_sent)
        self.got += records


def test_order_kept_nothing_lost_through_failures(tmp_path):
    sender, ticks = Flaky(up=False), []
    sp = Spool(tmp_path / "s", sender, tick=lambda: ticks.append(1), tick_s=0.02, max_batch=5, **FAST)
    for i in range(60):
        sp.submit({"i": i, "batch": "m" if i % 10 else None})
    time.sleep(0.2)
    sender.up.set()
    assert sp.flush(20)
    assert [r["i"] for r in sender.got] == list(range(60))  # in order, each once
    assert max(len(g) for g in sender.groups) == 5 and sp.retries >= 2
    assert sender.maybe[0] and not any(sender.maybe[1:])  # a retried batch may have arrived
    assert all(all(r["batch"] == "m" for r in sender.got if r["seq"] in g) for g in sender.groups if len(g) > 1)
    deadline = time.monotonic() + 5
    while not ticks and time.monotonic() < deadline:  # idle: the heartbeat still beats
        time.sleep(0.01)
    assert ticks and sp.pending() == 0
    sp.close()
    assert not (tmp_path / "s").exists()  # drained: nothing left behind


def test_submit_never_waits_and_flush_reports_the_timeout(tmp_path):
    gate = threading.Event()
    sp = Spool(tmp_path / "s", lambda records, maybe: gate.wait(), **FAST)
    times = []
    for i in range(50):
        t0 = time.perf_counter()
        sp.submit({"i": i}, attach=b"x" * 1000, name="blob.bin")
        times.append(time.perf_counter() - t0)
    assert max(times) < 0.5  # a local write and fsync, whatever the sender does
    t0 = time.perf_counter()
    assert sp.flush(0.3) is False and 0.25 < time.perf_counter() - t0 < 2
    assert sp.pending() == 50
    gate.set()
    assert sp.flush(20) and sp.pending() == 0
    sp.close()


def test_attachments_are_copies(tmp_path):
    src = tmp_path / "ckpt.npz"
    src.write_bytes(b"round 1")
    got = []
    gate = threading.Event()

    def sender(records, maybe):
        gate.wait()
        got.extend(pathlib.Path(r["file"]).read_bytes() for r in records)

    sp = Spool(tmp_path / "s", sender, **FAST)
    sp.submit({"kind": "artifact"}, attach=str(src))
    src.write_bytes(b"round 2")  # the source changes before the send
    sp.submit({"kind": "artifact"}, attach=str(src))
    gate.set()
    assert sp.flush(20)
    assert got == [b"round 1", b"round 2"]
    sp.close()


def test_a_rejected_record_is_kept_aside_and_the_rest_flows(tmp_path):
    got = []

    def sender(records, maybe):
        if any(r.get("bad") for r in records):
            raise Rejected("INVALID_PARAMETER_VALUE: bad metric name")
        got.extend(r["i"] for r in records)

    sp = Spool(tmp_path / "s", sender, max_batch=10, **FAST)
    for i in range(8):
        sp.submit({"i": i, "batch": "m", "bad": i == 3})
    assert sp.flush(20)
    assert got == [0, 1, 2, 4, 5, 6, 7] and sp.rejected == 1
    sp.close()
    kept = [json.loads(line) for line in (tmp_path / "s" / "rejected.jsonl").read_text().splitlines()]
    assert kept[0]["record"]["i"] == 3 and "INVALID_PARAMETER_VALUE" in kept[0]["error"]


def test_one_drainer_per_folder(tmp_path):
    gate = threading.Event()
    sp = Spool(tmp_path / "s", lambda records, maybe: gate.wait(), **FAST)
    with pytest.raises(SpoolBusy):
        Spool(tmp_path / "s", Flaky())
    gate.set()
    sp.close()


KILLED = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    from pipeline.tracking.spool import Spool

    server, gate = sys.argv[2], threading.Event()

    def sender(records, maybe_sent):       # "sends" by appending to the server file, then dies
        gate.wait()
        with open(server, "a") as f:
            for r in records:
                f.write(json.dumps({"seq": r["seq"], "i": r["i"], "maybe": maybe_sent}) + "\\n")
            f.flush(); os.fsync(f.fileno())
        if any(r["i"] == 12 for r in records):   # sent, but the cursor never learns it
            os.kill(os.getpid(), signal.SIGKILL)

    sp = Spool(sys.argv[1], sender, max_batch=4, backoff_s=(0.01, 0.05))
    for i in range(30):
        sp.submit({"i": i, "batch": "m" if i % 5 else None}, attach=b"blob%d" % i if i == 20 else None,
                  name="blob.bin")
    gate.set()
    time.sleep(60)
""")


def test_replay_after_a_killed_sender_sends_each_record_once(tmp_path):
    spool, server = tmp_path / "spool", tmp_path / "server.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(spool), str(server)],
        timeout=60,
        cwd=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")),
    )
    assert proc.returncode == -signal.SIGKILL
    before = [json.loads(line) for line in server.read_text().splitlines()]
    assert before[-1]["i"] >= 12 and len(before) < 30
    with open(spool / "records.jsonl", "ab") as f:
        f.write(b'{"seq": 31, "i": 3')  # a submit torn by the crash: never acknowledged
    seen = {r["seq"] for r in before}
    flagged, blobs = [], {}

    def sender(records, maybe_sent):  # a server-side check, as MlflowSender does for metrics
        for r in records:
            if maybe_sent:
                flagged.append(r["seq"])
            if maybe_sent and r["seq"] in seen:
                continue
            if "file" in r:
                blobs[r["i"]] = pathlib.Path(r["file"]).read_bytes()
            with open(server, "a") as f:
                f.write(json.dumps({"seq": r["seq"], "i": r["i"], "maybe": maybe_sent}) + "\n")

    sent = replay(str(spool), sender=sender)
    after = [json.loads(line) for line in server.read_text().splitlines()]
    assert [r["i"] for r in after] == list(range(30))  # every record once, in order
    assert sent == 30 - len(before) + len([s for s in flagged if s in seen])
    assert set(flagged) <= {r["seq"] for r in before[-4:]}  # only the batch in flight is in doubt
    assert blobs == {20: b"blob20"}
    assert not spool.exists()  # drained and removed
