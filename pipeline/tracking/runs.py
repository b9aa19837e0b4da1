"""MLflow runs seen from outside a training run: a sweep's parent run, the finished runs the
reports read, and the files they attach. Used through :mod:`pipeline.tracking.tracker`."""

from __future__ import annotations

import numpy as np

from pipeline.tracking.metric_names import round_metric
from pipeline.tracking.server import default_uri, prepare_store


def short(value) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def read_runs(
    uri: str, experiment: str, round_keys: list[str], skip_rounds: int = 2, parent_run_id: str | None = None
) -> list[dict]:
    """Finished runs of ``experiment`` (or the children of ``parent_run_id``): params, tags,
    final metrics, the median over rounds (after ``skip_rounds`` warm-up rounds) and the
    number of rounds of each round metric ``key`` (MLflow name: :func:`round_metric`), and the
    run's duration in seconds."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    if parent_run_id is not None:
        exp_ids = [get_run(client, parent_run_id).info.experiment_id]
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
            hist = sorted(client.get_metric_history(run.info.run_id, round_metric(key)), key=lambda m: m.step)
            values = [m.value for m in hist[skip_rounds:]] or [m.value for m in hist]
            counts[key] = len(hist)
            if values:
                medians[key] = float(np.median(values))
        out.append(
            {
                "run_id": run.info.run_id,
                "params": dict(run.data.params),
                "tags": dict(run.data.tags),
                "metrics": dict(run.data.metrics),
                "medians": medians,
                "counts": counts,
                "duration_s": ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000,
            }
        )
    return out


def get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"no MLflow run {run_id!r} at {client.tracking_uri}; check the id and --uri") from None


def log_run_files(uri: str, run_id: str, files: list[str], artifact_dir: str) -> None:
    """Attach files to an existing run (a sweep's parent) as artifacts under ``artifact_dir``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for path in files:
        client.log_artifact(run_id, path, artifact_dir)


class SweepRecord:
    """A sweep's parent run in MLflow: found again by the sweep's fingerprint, or created. Once
    :meth:`open`, it is the tracker :func:`pipeline.tracking.lifecycle.tracked_run` ends."""

    run_id: str | None = None

    def __init__(self, uri: str | None, experiment: str):
        from mlflow.tracking import MlflowClient

        self.uri = uri or default_uri()
        artifacts = prepare_store(self.uri)
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            self.experiment_id = exp.experiment_id

    def open(self, name: str, fingerprint: str, resume: str, params: dict) -> tuple[str, bool]:
        """The parent run id and whether it was resumed. ``resume``: 'auto' continues the latest
        unfinished parent with this fingerprint, 'never' starts a new one, anything else is a run id."""
        if resume not in ("auto", "never"):
            run = get_run(self.client, resume)
            if run.data.tags.get("sweep.fingerprint") != fingerprint:
                raise ValueError(
                    f"sweep.resume={resume} is a different sweep (other config); "
                    "resume with the same experiment and overrides"
                )
            self.client.update_run(resume, status="RUNNING")
            self.run_id = resume
            return resume, True
        if resume == "auto":
            query = f"tags.`sweep.fingerprint` = '{fingerprint}' and attributes.status != 'FINISHED'"
            found = self.client.search_runs(
                [self.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
            )
            if found:
                self.client.update_run(found[0].info.run_id, status="RUNNING")
                self.run_id = found[0].info.run_id
                return self.run_id, True
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"sweep.fingerprint": fingerprint, "sweep.name": name, "sweep.role": "parent"},
        )
        from mlflow.entities import Param

        items = [Param(k, short(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        self.run_id = run.info.run_id
        return self.run_id, False

    def finished_jobs(self, parent_id: str) -> dict[str, str]:
        """Job key -> run id of the parent's finished children."""
        query = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'FINISHED'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=10000)
        return {r.data.tags["sweep.job"]: r.info.run_id for r in runs if "sweep.job" in r.data.tags}

    def log_files(self, run_id: str, files: list[str], artifact_dir: str) -> None:
        for path in files:
            self.client.log_artifact(run_id, path, artifact_dir)

    def set_tags(self, run_id: str, tags: dict) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def log_metrics(self, run_id: str, metrics: dict) -> None:
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))

    def running_children(self, parent_id: str) -> list[str]:
        """Run ids of the parent's children still marked RUNNING."""
        query = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'"
        return [r.info.run_id for r in self.client.search_runs([self.experiment_id], query, max_results=10000)]

    def metric_total(self, run_id: str, suffix: str) -> float:
        """The sum over every step of every metric of ``run_id`` whose key ends with ``suffix``."""
        keys = [k for k in self.client.get_run(run_id).data.metrics if k.endswith(suffix)]
        return float(sum(m.value for k in keys for m in self.client.get_metric_history(run_id, k)))

    def close(self, parent_id: str, status: str) -> None:
        self.client.set_terminated(parent_id, status)

    def end(self, status: str = "FINISHED") -> None:
        """End the opened parent run with ``status`` (the lifecycle's call)."""
        self.close(self.run_id, status)


def log_report(uri: str, experiment: str, name: str, files: list[str]) -> str:
    """A run named ``name`` in ``experiment`` holding the report files; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    if mlflow.MlflowClient(uri).get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=prepare_store(uri))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=name) as run:
        for path in files:
            mlflow.log_artifact(path, "report")
    return run.info.run_id
