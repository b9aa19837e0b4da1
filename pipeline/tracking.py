"""Experiment tracking: the only module that talks to MLflow (and only the coordinator calls it).

One batched ``log_metrics`` call per round (a single HTTP request against a server);
figures and arrays as artifacts; the run can be reopened to resume it.
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np


PARENT_TAG = "mlflow.parentRunId"   # MLflow's tag that nests a run under a parent (sweeps)


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
        import matplotlib.pyplot as plt  # noqa: PLC0415

        plt.close(fig)

    def log_arrays(self, path: str, arrays: dict[str, np.ndarray]) -> None: ...
    def log_file(self, local_path: str, artifact_dir: str | None = None) -> None: ...
    def log_text(self, text: str, path: str) -> None: ...
    def download(self, run_id: str, artifact_path: str, dst: str) -> str:
        raise ValueError("resume by run id needs tracking=mlflow; pass the checkpoint path instead")

    def event(self, text: str) -> None:
        self.events.append(text)

    def end(self, status: str = "FINISHED") -> None: ...


class MlflowTracker(NullTracker):
    """MLflow tracking into ``uri`` (None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``)."""

    def __init__(self, uri: str | None, experiment: str, run_name: str | None):
        super().__init__()
        import mlflow  # noqa: PLC0415

        self.mlflow = mlflow
        self.uri = uri or default_uri()
        self.experiment, self.run_name = experiment, run_name

    def start(self, params: dict, tags: dict, run_id: str | None = None) -> str:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.uri)
        if run_id is None:
            mlflow.set_experiment(self.experiment)
            run = mlflow.start_run(run_name=self.run_name)
            mlflow.log_params({k: _short(v) for k, v in params.items()})
        else:  # resume: reopen the same run (params are already there)
            run = mlflow.start_run(run_id=run_id)
        mlflow.set_tags(tags)
        self.run_id = run.info.run_id
        return self.run_id

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics({f"round/{k}": float(v) for k, v in metrics.items()}, step=step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_figure(self, fig, path: str) -> None:
        import matplotlib.pyplot as plt  # noqa: PLC0415

        self.mlflow.log_figure(fig, path)
        plt.close(fig)

    def log_arrays(self, path: str, arrays: dict[str, np.ndarray]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            with open(local, "wb") as f:
                f.write(buf.getvalue())
            self.mlflow.log_artifact(local, os.path.dirname(path) or None)

    def log_file(self, local_path: str, artifact_dir: str | None = None) -> None:
        self.mlflow.log_artifact(local_path, artifact_dir)

    def log_text(self, text: str, path: str) -> None:
        self.mlflow.log_text(text, path)

    def download(self, run_id: str, artifact_path: str, dst: str) -> str:
        self.mlflow.set_tracking_uri(self.uri)
        return self.mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst)

    def event(self, text: str) -> None:
        super().event(text)
        if self.run_id:
            self.mlflow.log_text("\n".join(self.events) + "\n", "events.txt")

    def end(self, status: str = "FINISHED") -> None:
        if self.mlflow.active_run() is not None:
            self.mlflow.end_run(status=status)

    def ui_command(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            return f"open {self.uri} (run {self.run_id})"
        return f"mlflow ui --backend-store-uri {self.uri}   # then open http://127.0.0.1:5000"


def default_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else MLflow's default local store in the current folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def read_runs(uri: str, experiment: str, round_keys: list[str], skip_rounds: int = 2,
              parent_run_id: str | None = None) -> list[dict]:
    """Finished runs of ``experiment`` (or the children of ``parent_run_id``): params, tags,
    final metrics, the median over rounds (after ``skip_rounds`` warm-up rounds) and the
    number of rounds of each ``round/<key>`` metric, and the run's duration in seconds."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(uri)
    if parent_run_id is not None:
        exp_ids = [_get_run(client, parent_run_id).info.experiment_id]
        query = f"attributes.status = 'FINISHED' and tags.mlflow.parentRunId = '{parent_run_id}'"
    else:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise ValueError(f"no MLflow experiment {experiment!r} at {uri}; run the sweep first")
        exp_ids, query = [exp.experiment_id], "attributes.status = 'FINISHED'"
    out = []
    for run in client.search_runs(exp_ids, query, max_results=5000):
        medians, counts = {}, {}
        for key in round_keys:
            hist = sorted(client.get_metric_history(run.info.run_id, f"round/{key}"), key=lambda m: m.step)
            values = [m.value for m in hist[skip_rounds:]] or [m.value for m in hist]
            counts[key] = len(hist)
            if values:
                medians[key] = float(np.median(values))
        out.append({"run_id": run.info.run_id, "params": dict(run.data.params), "tags": dict(run.data.tags),
                    "metrics": dict(run.data.metrics), "medians": medians, "counts": counts,
                    "duration_s": ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000})
    return out


def _get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"no MLflow run {run_id!r} at {client.tracking_uri}; check the id and --uri") from None


def log_run_files(uri: str, run_id: str, files: list[str], artifact_dir: str) -> None:
    """Attach files to an existing run (a sweep's parent) as artifacts under ``artifact_dir``."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(uri)
    for path in files:
        client.log_artifact(run_id, path, artifact_dir)


class SweepRecord:
    """A sweep's parent run in MLflow: found again by the sweep's fingerprint, or created."""

    def __init__(self, uri: str | None, experiment: str):
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        self.uri = uri or default_uri()
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)

    def open(self, name: str, fingerprint: str, resume: str, params: dict) -> tuple[str, bool]:
        """The parent run id and whether it was resumed. ``resume``: 'auto' continues the latest
        unfinished parent with this fingerprint, 'never' starts a new one, anything else is a run id."""
        if resume not in ("auto", "never"):
            run = _get_run(self.client, resume)
            if run.data.tags.get("sweep.fingerprint") != fingerprint:
                raise ValueError(f"sweep.resume={resume} is a different sweep (other config); "
                                 "resume with the same experiment and overrides")
            self.client.update_run(resume, status="RUNNING")
            return resume, True
        if resume == "auto":
            query = f"tags.`sweep.fingerprint` = '{fingerprint}' and attributes.status != 'FINISHED'"
            found = self.client.search_runs([self.experiment_id], query, order_by=["attributes.start_time DESC"],
                                            max_results=1)
            if found:
                self.client.update_run(found[0].info.run_id, status="RUNNING")
                return found[0].info.run_id, True
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"sweep.fingerprint": fingerprint, "sweep.name": name, "sweep.role": "parent"})
        from mlflow.entities import Param  # noqa: PLC0415

        items = [Param(k, _short(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i:i + 100])
        return run.info.run_id, False

    def finished_jobs(self, parent_id: str) -> dict[str, str]:
        """Job key -> run id of the parent's finished children."""
        query = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'FINISHED'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=10000)
        return {r.data.tags["sweep.job"]: r.info.run_id for r in runs if "sweep.job" in r.data.tags}

    def close(self, parent_id: str, status: str) -> None:
        self.client.set_terminated(parent_id, status)


def log_report(uri: str, experiment: str, name: str, files: list[str]) -> str:
    """A run named ``name`` in ``experiment`` holding the report files; returns its id."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=name) as run:
        for path in files:
            mlflow.log_artifact(path, "report")
    return run.info.run_id
