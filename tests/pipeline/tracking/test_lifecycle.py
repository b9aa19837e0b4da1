"""One tracked-run lifecycle for training, sweeps and studies: the run ends FINISHED, FAILED on an
exception, KILLED on Ctrl-C; its events are on the server and its spool is drained and closed
however the body ends (the local SQLite store, no Ray)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from pipeline.tracking.lifecycle import tracked_run
from pipeline.tracking.runs import SweepRecord
from pipeline.tracking.tracker import MlflowTracker


class Boom(RuntimeError):
    pass


def _tracker(tmp_path, uri: str) -> MlflowTracker:
    return MlflowTracker(uri, "lifecycle", "job", spool_dir=str(tmp_path / "spool"), flush_timeout_s=60)


def _events(client, run_id: str, tmp_path) -> list[str]:
    with open(client.download_artifacts(run_id, "events.txt", str(tmp_path))) as f:
        return f.read().splitlines()


@pytest.mark.parametrize(
    "error,status",
    [(None, "FINISHED"), (Boom("the body failed"), "FAILED"), (KeyboardInterrupt(), "KILLED")],
)
def test_the_run_ends_with_the_status_of_how_the_body_ended(tmp_path, sqlite_uri, error, status):
    tracker, released = _tracker(tmp_path, sqlite_uri), []

    def body():
        with tracked_run(tracker, {"lr": 0.1}, {"kind": "test"}, release=lambda: released.append(True)):
            tracker.log_round(0, {"loss": 1.0})
            tracker.event("about to end")
            if error is not None:
                raise error

    if error is None:
        body()
    else:
        with pytest.raises(type(error)):
            body()
    client = MlflowClient(sqlite_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == status
    assert run.data.params == {"lr": "0.1"} and run.data.metrics == {"round/loss": 1.0}
    assert _events(client, tracker.run_id, tmp_path) == ["about to end"]  # events flushed on every path
    assert tracker.spool is None and released == [True]  # the spool drained and closed, the actors released


def test_the_body_may_choose_the_final_status(tmp_path, sqlite_uri):
    tracker = _tracker(tmp_path, sqlite_uri)
    with tracked_run(tracker, {}, {}) as run:
        run.status = "KILLED"  # a sweep stopped early
    assert MlflowClient(sqlite_uri).get_run(tracker.run_id).info.status == "KILLED"


def test_a_failed_start_releases_and_ends_nothing(tmp_path):
    calls = []

    class Unreachable:
        def start(self, params, tags, run_id=None):
            raise ConnectionError("no tracking server")

        def end(self, status="FINISHED"):
            calls.append(status)

    with pytest.raises(ConnectionError):
        with tracked_run(Unreachable(), {}, {}, release=lambda: calls.append("released")):
            pytest.fail("the body must not run")
    assert calls == ["released"]


def test_a_sweep_parent_run_that_raises_is_failed(tmp_path, sqlite_uri):
    record = SweepRecord(sqlite_uri, "sweeps")
    parent, resumed = record.open("s", "fingerprint", "auto", {"a": 1})
    assert not resumed and record.run_id == parent
    with pytest.raises(Boom):
        with tracked_run(record):
            raise Boom("a report failed")
    assert MlflowClient(sqlite_uri).get_run(parent).info.status == "FAILED"
    assert record.open("s", "fingerprint", "auto", {"a": 1}) == (parent, True)  # rerunning resumes it


def test_a_backlog_is_one_warning_line(tmp_path, capsys):
    class Slow:
        def end(self, status="FINISHED"):
            return "tracking: 3 records not yet sent; send them with: ffm-report replay x"

    with tracked_run(Slow(), prog="ffm-train"):
        pass
    assert (
        capsys.readouterr().err
        == "ffm-train: warning: tracking: 3 records not yet sent; send them with: ffm-report replay x\n"
    )
