"""Experiment tracking of one training run: the tracker the coordinator logs through (MLflow or none).

During a run every call (metrics, params, tags, artifacts, events, the final status) goes
through an on-disk spool (:mod:`pipeline.tracking.spool`) drained in order by a background thread, so
logging costs a local write, an outage of the tracking server never stalls or crashes
training, and nothing is lost: what did not arrive by ``end`` stays on disk for
``ffm-report replay``. Runs carry their driver's host, pid and a heartbeat, so the next start
marks runs whose driver died as FAILED; a resumed run logs each step once and keeps its events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import posixpath
import sys
import tempfile
import threading
import time

import numpy as np

from pipeline.tracking.metric_names import round_metric
from pipeline.tracking.runs import get_run, short
from pipeline.tracking.server import (
    HEARTBEAT_S,
    HEARTBEAT_TAG,
    LOST_TAG,
    MlflowSender,
    create_run,
    default_uri,
    driver_tags,
    mark_dead_runs,
    open_store,
    prepare_store,
    probe,
    replay_spool,
    run_url,
    store_folder,
)
from pipeline.tracking.spool import Spool, SpoolBacklog, SpoolBusy
from pipeline.tracking.system_metrics import SystemSampler

PARENT_TAG = "mlflow.parentRunId"  # MLflow's tag that nests a run under a parent (sweeps)
# MLflow's standard tags the UI shows: the run's description (markdown) and its source
DESCRIPTION_TAG, SOURCE_COMMIT_TAG, SOURCE_NAME_TAG = (
    "mlflow.note.content",
    "mlflow.source.git.commit",
    "mlflow.source.name",
)


class NullTracker:
    """tracking=none: keeps events in memory, logs nothing."""

    run_id: str | None = None
    uri: str | None = None

    def __init__(self):
        self.events: list[str] = []

    def start(self, params: dict, tags: dict, run_id: str | None = None) -> str | None:
        return None

    def log_round(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def log_figure(self, fig, path: str) -> None:
        import matplotlib.pyplot as plt

        plt.close(fig)

    def log_arrays(self, path: str, arrays: dict[str, np.ndarray]) -> None: ...
    def log_image(self, key: str, image: np.ndarray, step: int) -> None: ...
    def log_file(self, local_path: str, artifact_dir: str | None = None) -> None: ...
    def log_text(self, text: str, path: str) -> None: ...
    def download(self, run_id: str, artifact_path: str, dst: str) -> str:
        raise ValueError("resume by run id needs tracking=mlflow; pass the checkpoint path instead")

    def event(self, text: str, echo: bool = True) -> None:
        """Keep ``text`` for the run's events.txt and, with ``echo`` (retries, drops, resumes), say
        it on the console too (above a progress bar)."""
        from tqdm import tqdm

        self.events.append(text)
        if echo:
            tqdm.write(f"ffm-train: {text}", file=sys.stderr)

    def set_description(self, text: str) -> None: ...
    def prepare_in_background(self) -> None: ...
    def log_params(self, params: dict) -> None: ...
    def log_input(self, dataset: dict) -> None: ...
    def log_model(self, model_dir: str, register_as: str | None = None) -> None: ...
    def end(self, status: str = "FINISHED") -> None: ...
    def probe(self, timeout_s: float = 5.0) -> None: ...


@dataclasses.dataclass
class TrackingBacklog:
    """What :meth:`MlflowTracker.end` returns when the spool did not drain in time: nothing is
    lost (the records stay in ``spool_dir``), but the run is incomplete on the server until
    ``ffm-report replay <spool_dir>`` sends the rest."""

    spool_dir: str
    run_id: str | None
    uri: str
    pending: int
    rejected: int
    last_error: str | None

    @property
    def message(self) -> str:
        """One line for the terminal: how much is left, where it is, and the command that sends it."""
        if self.pending:
            return (
                f"tracking: {self.pending} records of run {self.run_id} not yet sent to {self.uri} "
                f"({self.last_error or 'still sending'}); they are kept in {self.spool_dir}; "
                f"send them with: ffm-report replay {self.spool_dir}"
            )
        return (
            f"tracking: {self.rejected} records of run {self.run_id} were refused by {self.uri}; "
            f"they and the reasons are kept in {os.path.join(self.spool_dir, 'rejected.jsonl')}"
        )

    def __str__(self) -> str:
        return self.message


class MlflowTracker(NullTracker):
    """MLflow tracking into ``uri`` (None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``).

    ``start`` talks to the server synchronously (it creates or reopens the run); every later call
    is a record in the on-disk spool ``spool_dir`` (None: a new temporary folder), sent in order by
    a background thread, so a slow or absent server never stalls training and loses nothing.
    ``end`` waits up to ``flush_timeout_s`` for the spool to drain."""

    SPOOL_BACKOFF_S = (0.5, 10.0)  # the drain thread's retry delays (first, cap) on top of MLflow's own

    def __init__(
        self,
        uri: str | None,
        experiment: str,
        run_name: str | None,
        spool_dir: str | None = None,
        flush_timeout_s: float = 120.0,
        system_metrics_s: float = 0.0,
    ):
        super().__init__()
        self.system_metrics_s = system_metrics_s  # > 0: sample this host's load every so many seconds
        self._sampler = None
        self._prepared: threading.Thread | None = None
        self.uri = uri or default_uri()
        self.experiment, self.run_name = experiment, run_name
        self.spool_dir, self.flush_timeout_s = spool_dir, flush_timeout_s
        self.spool: Spool | None = None
        self.sender: MlflowSender | None = None
        self._seen: dict[str, int] = {}  # resume: metric key -> last step already logged
        self._probe_timeout_s = 5.0

    def prepare_in_background(self) -> None:
        """Import MLflow and open a local SQLite store (a new one creates its tables: seconds) in a
        thread, while the caller starts Ray; :meth:`start` waits for it. Errors are left to
        ``start``; a server is not contacted here (its probe is quick, MLflow's retries are not)."""
        if store_folder(self.uri) is not None:
            # not a daemon: an error or Ctrl-C meanwhile must not kill a new store's migration half-way
            self._prepared = threading.Thread(target=open_store, args=(self.uri,), name="ffm-store")
            self._prepared.start()

    def start(self, params: dict, tags: dict, run_id: str | None = None) -> str:
        """Create the run (or reopen ``run_id`` to resume it) and open the spool; returns the run id.
        First marks RUNNING runs of the experiment whose driver died as FAILED."""
        if self._prepared is not None:
            self._prepared.join()
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.probe(self._probe_timeout_s)  # an absent server: one line in seconds, not MLflow's retries
        prepare_store(self.uri)  # a local SQLite store's folder
        client = MlflowClient(self.uri)
        with contextlib.suppress(MlflowException):  # e.g. no permission on others' runs: not our problem
            mark_dead_runs(self.uri, self.experiment, keep=run_id)
        before_start = list(self.events)
        tags = {k: str(v) for k, v in tags.items()} | driver_tags()
        run = (
            create_run(client, self.experiment, self.run_name, tags)
            if run_id is None
            else self._reopen(client, run_id, tags)
        )
        self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        self.sender = MlflowSender(self.uri)
        self.spool = Spool(
            self._spool_path(),
            self.sender,
            meta={"uri": self.uri},
            tick=self._heartbeat,
            tick_s=HEARTBEAT_S,
            backoff_s=self.SPOOL_BACKOFF_S,
        )
        if run_id is None:
            items = sorted((k, short(v)) for k, v in params.items())
            for i in range(0, len(items), 100):
                self._submit({"kind": "params", "params": dict(items[i : i + 100])})
        else:
            self._note_spooled_steps()
            self.events[:] = self._prior_events(client) + before_start
        if self.events:
            self._log_events()
        if self.system_metrics_s > 0:
            self._sampler = SystemSampler(
                self.log_metrics, self.system_metrics_s, run.info.start_time / 1000, self.spool_dir or "."
            ).start()
        return self.run_id

    def probe(self, timeout_s: float = 5.0) -> None:
        """Raise :class:`TrackingUnavailable` (one line) unless the tracking URI answers within
        ``timeout_s`` (remembered: ``start`` probes again with it)."""
        self._probe_timeout_s = timeout_s
        probe(self.uri, timeout_s)

    def _spool_path(self) -> str:
        if self.spool_dir is None:
            self.spool_dir = tempfile.mkdtemp(prefix="ffm-tracking-spool-")
        return self.spool_dir

    def _reopen(self, client, run_id: str, tags: dict):
        """Resume: the run RUNNING again with this driver's tags; remember each metric's last step."""
        from mlflow.entities import RunTag

        run = get_run(client, run_id)
        client.update_run(run_id, status="RUNNING")
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
        if LOST_TAG in run.data.tags:
            client.delete_tag(run_id, LOST_TAG)
        self._seen = {m.key: m.step for m in run.data._metric_objs}  # the latest entry of each key
        return run

    def _note_spooled_steps(self) -> None:
        """Resume: metric steps a crashed driver left unsent in the same spool folder count as logged."""
        for r in self.spool.pending_records():
            if r.get("run_id") == self.run_id and r["kind"] == "metrics":
                for key in r["metrics"]:
                    self._seen[key] = max(self._seen.get(key, r["step"]), r["step"])

    def _prior_events(self, client) -> list[str]:
        """The resumed run's events so far: from a leftover spool record if one is newer, else the server's."""
        spooled = [
            r
            for r in self.spool.pending_records()
            if r.get("run_id") == self.run_id and r["kind"] == "artifact" and r.get("path") == "events.txt"
        ]
        if spooled:
            with open(os.path.join(self.spool.path, spooled[-1]["file"])) as f:
                return f.read().splitlines()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = client.download_artifacts(self.run_id, "events.txt", tmp)
            except Exception:  # noqa: BLE001  (no events.txt yet: MlflowException or an HTTP 404)
                return []
            with open(local) as f:
                return f.read().splitlines()

    def _heartbeat(self) -> None:
        """Called by the drain thread every HEARTBEAT_S: proof for mark_dead_runs that we are alive."""
        self.sender.client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))

    def _submit(self, record: dict, attach: str | bytes | None = None, name: str | None = None) -> None:
        if self.spool is None:
            raise RuntimeError("MlflowTracker: log only between start() and end()")
        record = {**record, "run_id": self.run_id}
        if record["kind"] == "metrics":
            record["batch"] = f"metrics:{self.run_id}"  # consecutive rounds go in one request
        self.spool.submit(record, attach, name)

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        self._metrics({round_metric(k): v for k, v in metrics.items()}, step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._metrics(metrics, step)

    def _metrics(self, metrics: dict[str, float], step: int) -> None:
        """Spool one step's metrics; on a resume, keys already logged at this step or later are
        skipped (the recomputed values are identical), so each step is logged once."""
        fresh = {k: float(v) for k, v in metrics.items() if k not in self._seen or step > self._seen[k]}
        if fresh:
            self._submit({"kind": "metrics", "step": int(step), "ts": int(time.time() * 1000), "metrics": fresh})

    def _artifact(self, data: str | bytes, path: str) -> None:
        """Spool ``data`` (bytes, or a local file's path: copied now) as the artifact ``path``."""
        folder, name = posixpath.split(path)
        self._submit({"kind": "artifact", "dir": folder or None, "path": path}, data, name)

    def log_figure(self, fig, path: str) -> None:
        """Rendered here (matplotlib is not thread-safe), the PNG bytes spooled."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        self._artifact(buf.getvalue(), path)

    def log_image(self, key: str, image: np.ndarray, step: int) -> None:
        """Spool an (H, W, 3) uint8 image as MLflow's image ``key`` at ``step`` (the run page's
        images walk through the steps with a slider)."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(image, dtype=np.uint8))
        self._submit({"kind": "image", "key": key, "step": int(step)}, buf.getvalue(), "image.npy")

    def log_arrays(self, path: str, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        self._artifact(buf.getvalue(), path)

    def log_file(self, local_path: str, artifact_dir: str | None = None) -> None:
        name = os.path.basename(local_path)
        self._artifact(local_path, posixpath.join(artifact_dir, name) if artifact_dir else name)

    def log_text(self, text: str, path: str) -> None:
        self._artifact(text.encode(), path)

    def set_description(self, text: str) -> None:
        """Spool the run's description (markdown, shown on its page in the UI)."""
        self._submit({"kind": "tags", "tags": {DESCRIPTION_TAG: text}})

    def log_params(self, params: dict) -> None:
        """Spool params known only after the start (a chip's revealed imperfections)."""
        items = sorted((k, short(v)) for k, v in params.items())
        for i in range(0, len(items), 100):
            self._submit({"kind": "params", "params": dict(items[i : i + 100])})

    def log_input(self, dataset: dict) -> None:
        """Spool a dataset the run used (MLflow's Datasets panel): ``name``, ``digest``,
        ``source_type``, ``source``, ``profile`` (JSON text) and ``context`` (training, ...)."""
        self._submit({"kind": "inputs", "dataset": dict(dataset)})

    def log_model(self, model_dir: str, register_as: str | None = None) -> None:
        """Spool a saved MLflow model folder as the artifact folder ``model`` (``runs:/<id>/model``)
        and, given a name, its registration as a new version of that registered model (sent
        after the files, in order)."""
        for root, _, files in os.walk(model_dir):
            for name in sorted(files):
                rel = os.path.relpath(os.path.join(root, name), model_dir)
                self._artifact(os.path.join(root, name), posixpath.join("model", *rel.split(os.sep)))
        if register_as:
            self._submit({"kind": "register", "name": register_as, "path": "model"})

    def download(self, run_id: str, artifact_path: str, dst: str) -> str:
        """An artifact of a run (resume by run id: its checkpoint). What this spool folder still owes
        the server (a killed driver's last checkpoint) is sent first, so the download is the latest."""
        import mlflow

        if self.spool is None and self.spool_dir and os.path.isfile(os.path.join(self.spool_dir, "records.jsonl")):
            with contextlib.suppress(SpoolBacklog, SpoolBusy):  # the rest drains, in order, from start()
                replay_spool(self.spool_dir, self.uri, self.flush_timeout_s)
        return mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=dst, tracking_uri=self.uri
        )

    def event(self, text: str, echo: bool = True) -> None:
        super().event(text, echo)
        if self.spool is not None:
            self._log_events()

    def _log_events(self) -> None:
        """events.txt holds every event of the run (a resume's earlier ones too), rewritten whole."""
        self.log_text("\n".join(self.events) + "\n", "events.txt")

    def end(self, status: str = "FINISHED") -> TrackingBacklog | None:
        """Spool the final status and wait up to flush_timeout_s for everything to arrive. Returns
        None when all arrived, else a :class:`TrackingBacklog` (print its one-line message)."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self.spool is None:
            return None
        self._submit({"kind": "terminate", "status": status, "end_ms": int(time.time() * 1000)})
        spool, self.spool = self.spool, None
        drained = spool.flush(self.flush_timeout_s)
        backlog = TrackingBacklog(
            self.spool_dir, self.run_id, self.uri, spool.pending(), spool.rejected, spool.last_error
        )
        spool.close()
        return None if drained and not backlog.rejected else backlog

    def ui_command(self) -> str:
        """How to see this run, as a link that opens MLflow's model-training view (not its GenAI
        default): ``<server>/#/experiments/<id>/runs/<id>?workflowType=machine_learning``."""
        if self.uri.startswith(("http://", "https://")):
            return f"open {run_url(self.uri, self.experiment_id, self.run_id)}"
        local = run_url("http://127.0.0.1:5000", self.experiment_id, self.run_id)
        return f"mlflow ui --backend-store-uri {self.uri}   # then open {local}"
