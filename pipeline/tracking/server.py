"""The tracking server seen from outside the training thread (used by :mod:`pipeline.tracking.tracker`).

``MlflowSender`` sends the spool's records (:mod:`pipeline.tracking.spool`) from its drain thread.
``probe`` fails fast, with one line, when the tracking URI does not answer, so a run stops
before training instead of after its first logging call. A run started by
:class:`pipeline.tracking.tracker.MlflowTracker` carries tags naming its driver (host, pid, the pid's
start time) and a heartbeat the spool's drain thread refreshes; ``mark_dead_runs`` uses them
to mark a RUNNING run whose driver was killed (SIGKILL, OOM, a lost node) as FAILED.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import posixpath
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from pipeline.tracking.spool import Rejected, check_spool, read_meta, replay


class TrackingUnavailable(ValueError):
    """The tracking URI cannot be reached or written; the message is one line: what, and the fix."""


def run_url(server: str, experiment_id: str | None, run_id: str | None) -> str:
    """A run's page in the MLflow UI, in the model-training view: MLflow 3 opens experiments in
    its GenAI view unless the route carries ``workflowType=machine_learning``."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def create_run(client, experiment: str, run_name: str | None, tags: dict):
    """A new run in ``experiment`` (created if missing) with MLflow's usual context tags."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking.context.registry import resolve_tags

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        try:
            exp_id = client.create_experiment(experiment, artifact_location=prepare_store(client.tracking_uri))
        except MlflowException:  # a parallel job (sweep) created it first
            exp_id = client.get_experiment_by_name(experiment).experiment_id
    else:
        exp_id = exp.experiment_id
    return client.create_run(exp_id, tags=resolve_tags(tags), run_name=run_name)


class MlflowSender:
    """Sends spool records to MLflow in the spool's drain thread (see :mod:`pipeline.tracking.spool`).

    A refusal that retrying cannot fix (invalid value, deleted run) raises ``Rejected``; anything
    else (no connection, 5xx, the client's retries used up) is raised as is, to be retried."""

    REFUSED = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE"}

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        self.uri, self.client = uri, MlflowClient(uri)

    def __call__(self, records: list[dict], maybe_sent: bool) -> None:
        """Send ``records`` (all of one kind) with the handler for their kind."""
        from mlflow.exceptions import InvalidUrlException, MlflowException
        from requests import HTTPError

        handler = getattr(self, f"_send_{records[0]['kind']}", None)
        if handler is None:
            raise Rejected(f"unknown record kind {records[0]['kind']!r}")
        try:
            handler(records, maybe_sent)
        except MlflowException as exc:
            if exc.error_code in self.REFUSED and not isinstance(exc, InvalidUrlException):
                raise Rejected(str(exc)) from exc
            raise
        except HTTPError as exc:  # artifact uploads
            if exc.response is not None and exc.response.status_code in (400, 413, 422):
                raise Rejected(str(exc)) from exc
            raise

    def _send_metrics(self, records: list[dict], maybe_sent: bool) -> None:
        """One log_batch per up to 1000 values; a record is never split, so after a crash each
        record is either on the server whole or not at all (``maybe_sent`` checks which)."""
        from mlflow.entities import Metric

        if maybe_sent:
            history: dict[str, set] = {}
            records = [r for r in records if not self._on_server(r, history)]
        chunk: list = []
        for r in records:
            items = [Metric(k, v, r["ts"], r["step"]) for k, v in r["metrics"].items()]
            if chunk and len(chunk) + len(items) > 1000:
                self.client.log_batch(r["run_id"], metrics=chunk, synchronous=True)
                chunk = []
            chunk += items
        if chunk:
            self.client.log_batch(records[0]["run_id"], metrics=chunk, synchronous=True)

    def _on_server(self, record: dict, history: dict) -> bool:
        """Whether ``record`` already arrived (its first key has an entry with its step and time)."""
        key = next(iter(record["metrics"]))
        if key not in history:
            history[key] = {(m.step, m.timestamp) for m in self.client.get_metric_history(record["run_id"], key)}
        return (record["step"], record["ts"]) in history[key]

    def _send_params(self, records: list[dict], maybe_sent: bool) -> None:
        from mlflow.entities import Param

        for r in records:  # the same value again is accepted: idempotent
            self.client.log_batch(r["run_id"], params=[Param(k, v) for k, v in r["params"].items()], synchronous=True)

    def _send_artifact(self, records: list[dict], maybe_sent: bool) -> None:
        for r in records:  # an upload replaces the same path: idempotent
            self.client.log_artifact(r["run_id"], r["file"], r["dir"])

    def _send_tags(self, records: list[dict], maybe_sent: bool) -> None:
        for r in records:  # the same value again is accepted: idempotent
            for key, value in r["tags"].items():
                self.client.set_tag(r["run_id"], key, value)

    def _send_inputs(self, records: list[dict], maybe_sent: bool) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        for r in records:  # the same dataset again is recorded once: idempotent
            d = r["dataset"]
            dataset = Dataset(d["name"], d["digest"], d["source_type"], d["source"], profile=d.get("profile"))
            tags = [InputTag("mlflow.data.context", d.get("context", "training"))]
            self.client.log_inputs(r["run_id"], datasets=[DatasetInput(dataset, tags)])

    def _send_image(self, records: list[dict], maybe_sent: bool) -> None:
        import numpy as np

        for r in records:  # MLflow names it images/<key>%step%<step>%...: one per key and step
            prefix = f"{r['key']}%step%{r['step']}%"
            logged = self.client.list_artifacts(r["run_id"], "images")
            if not any(posixpath.basename(a.path).startswith(prefix) for a in logged):  # a replay, a resume
                self.client.log_image(r["run_id"], np.load(r["file"]), key=r["key"], step=r["step"])

    def _send_register(self, records: list[dict], maybe_sent: bool) -> None:
        """A new version of the registered model per run (a replay or a resume adds none); a
        refusal (no permission) is the record's rejection, not a retry that holds the spool up."""
        from mlflow.exceptions import MlflowException

        for r in records:
            try:
                with contextlib.suppress(MlflowException):  # it exists already (another run registered it)
                    self.client.create_registered_model(r["name"])
                if any(v.name == r["name"] for v in self.client.search_model_versions(f"run_id='{r['run_id']}'")):
                    continue
                self.client.create_model_version(r["name"], f"runs:/{r['run_id']}/{r['path']}", run_id=r["run_id"])
            except MlflowException as exc:
                if exc.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                    raise Rejected(f"registering model {r['name']!r}: {exc}") from exc
                raise

    def _send_terminate(self, records: list[dict], maybe_sent: bool) -> None:
        for r in records:
            self.client.set_terminated(r["run_id"], r["status"], end_time=r["end_ms"])
            if LOST_TAG in self.client.get_run(r["run_id"]).data.tags:  # replayed after being marked dead
                self.client.delete_tag(r["run_id"], LOST_TAG)


# ---- driver liveness ------------------------------------------------------------------------

HOST_TAG, PID_TAG, PID_START_TAG = "driver.host", "driver.pid", "driver.pid_start"
HEARTBEAT_TAG, LOST_TAG = "driver.heartbeat", "driver.lost"
HEARTBEAT_S = 30.0  # the drain thread refreshes driver.heartbeat this often
STALE_S = 600.0  # a driver on another host silent this long is taken for dead


def driver_tags() -> dict[str, str]:
    """Who drives this run: host, pid, the pid's start time (tells a reused pid apart), heartbeat."""
    pid = os.getpid()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(pid),
        PID_START_TAG: _proc_stat(pid)[1],
        HEARTBEAT_TAG: str(int(time.time())),
    }


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks since boot) from Linux /proc; ('?', '') if unreadable,
    ('X', '') if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except FileNotFoundError:
        return "X", ""
    except (OSError, IndexError):
        return "?", ""


def _pid_alive(pid: int, started: str) -> bool:
    """Whether ``pid`` runs (not a zombie) and, if ``started`` is known, is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    state, start = _proc_stat(pid)
    return state not in ("Z", "X") and (not started or not start or start == started)


def driver_gone(tags: dict, start_ms: int, stale_s: float = STALE_S) -> str | None:
    """Why the driver of a RUNNING run is gone, or None (alive, or not a run this module started)."""
    if PID_TAG not in tags:
        return None  # not ours (a sweep's parent, an older run): leave it alone
    host, pid = tags.get(HOST_TAG), int(tags[PID_TAG])
    if host == socket.gethostname():
        alive = _pid_alive(pid, tags.get(PID_START_TAG, ""))
        return None if alive else f"driver pid {pid} on {host} is no longer running"
    age = time.time() - float(tags.get(HEARTBEAT_TAG) or start_ms / 1000)
    return f"no heartbeat from driver pid {pid} on {host} for {age / 60:.0f} min" if age > stale_s else None


def mark_dead_runs(uri: str, experiment: str, stale_s: float = STALE_S, keep: str | None = None) -> list[str]:
    """Mark RUNNING runs of ``experiment`` whose driver is gone (same host: its pid is not running;
    another host: no heartbeat for ``stale_s``) FAILED, with tag ``driver.lost`` saying why and the
    last heartbeat as end time; ``keep``: a run id to leave alone (the one being resumed)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    marked = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        why = driver_gone(run.data.tags, run.info.start_time, stale_s)
        if why is None or run.info.run_id == keep:
            continue
        beat = run.data.tags.get(HEARTBEAT_TAG)
        client.set_tag(
            run.info.run_id,
            LOST_TAG,
            f"{why}; marked FAILED by pid {os.getpid()} on "
            f"{socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
        )
        client.set_terminated(run.info.run_id, "FAILED", end_time=int(float(beat) * 1000) if beat else None)
        marked.append(run.info.run_id)
    return marked


# ---- reachability -----------------------------------------------------------------------------

_FIX = "start it, or point MLFLOW_TRACKING_URI (or tracking.uri=...) at a running one, or use tracking=none"


# stores MLflow opens besides http(s), sqlite and files (SQLAlchemy dialects, Databricks, UC)
KNOWN_SCHEMES = ("postgresql", "postgres", "mysql", "mssql", "oracle", "databricks", "databricks-uc", "uc")


def probe(uri: str | None = None, timeout_s: float = 5.0) -> None:
    """Check quickly (about ``timeout_s`` at most) that the tracking URI answers; raises
    :class:`TrackingUnavailable` with one line naming the URI and the fix. http(s): GET /health,
    else the REST API; sqlite / a local path: the folder exists and is writable; a database URL:
    its port accepts a connection; anything else: not checked."""
    uri = uri or default_uri()
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        _probe_http(uri.rstrip("/"), timeout_s)
    elif scheme == "sqlite" or scheme in ("", "file"):
        _probe_folder(uri, scheme)
    elif scheme.split("+")[0] not in KNOWN_SCHEMES:
        raise TrackingUnavailable(
            f"unknown tracking URI scheme {scheme!r} in {_safe(uri)}; use http(s)://, "
            "sqlite:///, file:// or a database URL (postgresql://, mysql://, ...)"
        )
    else:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port or {"postgresql": 5432, "mysql": 3306, "mssql": 1433}.get(scheme.split("+")[0])
        if parts.hostname and port:
            try:
                socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            except OSError as exc:
                raise TrackingUnavailable(
                    f"tracking store {_safe(uri)} is not reachable ({_one_line(exc)}); {_FIX}"
                ) from None


def _probe_folder(uri: str, scheme: str) -> None:
    """sqlite: the database's folder, or the folder it is in, exists and is writable (the tracker
    creates that one missing level, as for the default ``outputs/mlflow.db``: :func:`prepare_store`);
    a file store: its nearest existing ancestor is writable (MLflow creates the rest)."""
    if scheme == "sqlite":
        folder = store_folder(uri)
        if folder is None:
            return
        folder = folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder))
    else:
        folder = urllib.parse.urlsplit(uri).path or "."
        while not os.path.exists(folder) and os.path.dirname(os.path.abspath(folder)) != os.path.abspath(folder):
            folder = os.path.dirname(os.path.abspath(folder))
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        raise TrackingUnavailable(
            f"tracking store {uri}: folder {os.path.abspath(folder)} does not exist or is "
            "not writable; create it, or point MLFLOW_TRACKING_URI (or tracking.uri=...) "
            "at a writable place"
        )


def store_folder(uri: str) -> str | None:
    """The folder of a local SQLite store (``sqlite:///outputs/mlflow.db``: ``outputs``); None otherwise."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :]
    return None if path in ("", ":memory:") else os.path.dirname(path) or "."


def open_store(uri: str) -> None:
    """Import MLflow and open the store at ``uri`` (a new SQLite store creates its tables);
    errors are left to the caller's next use of the store."""
    with contextlib.suppress(Exception):
        from mlflow.tracking import MlflowClient

        prepare_store(uri)
        MlflowClient(uri).search_experiments(max_results=1)


def prepare_store(uri: str) -> str | None:
    """Create a local SQLite store's folder (SQLite creates none); returns where its experiments
    keep their artifacts: ``mlruns/`` beside the database (None: the store's own default)."""
    folder = store_folder(uri)
    if folder is None:
        return None
    os.makedirs(folder, exist_ok=True)  # one level in practice: the probe checked the folder it goes in
    return pathlib.Path(os.path.abspath(os.path.join(folder, "mlruns"))).as_uri()


def _probe_http(uri: str, timeout_s: float) -> None:
    """GET /health; if that is not 200 (a proxy, an auth layer), the REST API with the env's credentials."""
    t0 = time.monotonic()
    for path, auth in (("/health", False), ("/api/2.0/mlflow/experiments/search?max_results=1", True)):
        req = urllib.request.Request(uri + path, headers=_auth_headers() if auth else {})
        left = max(0.5, timeout_s - (time.monotonic() - t0))
        try:
            with urllib.request.urlopen(req, timeout=left) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise TrackingUnavailable(
                    f"tracking server {uri} refused the credentials (HTTP {exc.code}); set "
                    "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or "
                    "MLFLOW_TRACKING_TOKEN"
                ) from None
            code = exc.code
        except (OSError, ValueError) as exc:  # refused, timed out, no such host, bad URL
            raise TrackingUnavailable(
                f"tracking server {uri} is not reachable ({_one_line(exc)}, {time.monotonic() - t0:.1f} s); {_FIX}"
            ) from None
    raise TrackingUnavailable(f"tracking server {uri} answers HTTP {code}, not like an MLflow server; {_FIX}")


def _auth_headers() -> dict[str, str]:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _one_line(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split()) or type(exc).__name__


def _safe(uri: str) -> str:
    """The URI without a password."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urllib.parse.urlunsplit(parts)


DEFAULT_ROOT = "outputs"  # paths.root: where everything generated goes


def default_uri(root: str | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else a local SQLite store in the outputs folder
    (``sqlite:///<paths.root>/mlflow.db``, its artifacts in ``<paths.root>/mlruns``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root or DEFAULT_ROOT}/mlflow.db"


def replay_spool(path: str, uri: str | None = None, timeout_s: float | None = None) -> int:
    """Drain a leftover spool folder to ``uri`` (default: the URI it was written for); returns how
    many records were sent (:func:`pipeline.tracking.spool.replay`)."""
    check_spool(path)
    uri = uri or read_meta(path).get("uri")
    if not uri:
        raise ValueError(f"{path}/meta.json names no tracking URI; pass --uri")
    return replay(path, timeout_s, sender=MlflowSender(uri))
