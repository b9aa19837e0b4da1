"""Sweeps: many independent training jobs, run in parallel on the Ray cluster.

``ffm-train experiment=imperfection_sweep`` sets ``sweep.*``; :func:`run_sweep` then

1. expands the grid ``seeds x trainers x axes`` into jobs (:func:`expand`). Masks trained
   on the twin do not depend on the chip's imperfections, so ``ideal`` is trained once per
   seed (and per non-hardware axis value) and every ``insilico`` job deploys those masks
   on its chip (``trainer.masks_from``) instead of training again;
2. checks every job's config before anything starts;
3. opens one MLflow parent run (or finds the unfinished one with the same config: rerunning
   the command resumes the sweep), skips jobs that already have a finished child run, and
   resumes a job that was cut off from its own checkpoint;
4. runs each job as a Ray task calling :func:`pipeline.train` (the job's chips are actors
   of their own), at most ``max_parallel`` at once, insilico jobs as soon as their masks
   exist; a failed job is recorded and the others go on;
5. writes the sweep report (:mod:`pipeline.reports.sweep_report`) to disk and to the parent run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass

from optics.core import measurement
from pipeline.config import ConfigError, RunConfig, load_config
from pipeline.reports.run_report import summary_accuracy
from pipeline.reports.sweep_report import report_sweep
from pipeline.sweeps.keys import job_key, twin_point
from pipeline.tracking.lifecycle import tracked_run
from pipeline.tracking.runs import SweepRecord
from pipeline.tracking.server import default_uri

ORDER = {"ideal": 0, "ffm": 1, "pat": 2, "insilico": 3}  # submission order: masks first, long jobs early


@dataclass(frozen=True)
class Job:
    """One training (or deployment) run of the sweep."""

    key: str  # e.g. "ffm/chip.level=1.0/seed=2": the child run's name and tag
    trainer: str
    seed: int
    point: tuple  # ((axis, value), ...) this job's values of the sweep axes
    needs: str | None = None  # key of the ideal job whose masks an insilico job deploys


def expand(sw) -> list[Job]:
    """Every job of the grid, ideal ones (shared across hardware axes) first."""
    axes = list(sw.axes.items())
    grid = [tuple(zip([k for k, _ in axes], values)) for values in itertools.product(*[v for _, v in axes])]
    jobs: dict[str, Job] = {}
    for seed in sw.seeds:
        for point in grid:
            twin = twin_point(point)
            ideal = job_key("ideal", twin, seed)
            if {"ideal", "insilico"} & set(sw.trainers):
                jobs.setdefault(ideal, Job(ideal, "ideal", seed, twin))
            for trainer in ("ffm", "pat", "insilico"):
                if trainer in sw.trainers:
                    key = job_key(trainer, point, seed)
                    jobs[key] = Job(key, trainer, seed, point, ideal if trainer == "insilico" else None)
    return sorted(jobs.values(), key=lambda j: ORDER[j.trainer])


def set_key(tree: dict, dotted: str, value, where: str | None = None) -> None:
    """Set the dotted config key in the plain mapping ``tree``; an unknown key is one line naming
    ``where`` (default ``sweep.axes.<key>``) and the section's known keys. Keys under the
    free-form mappings (chip.hardware, chip.measurement, vars) are added."""
    where = where or f"sweep.axes.{dotted}"
    *path, leaf = dotted.split(".")
    node = tree
    for part in path:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"{where}: {part!r} is not a config section")
        node = node[part]
    if leaf not in node and path and path[-1] not in ("hardware", "measurement", "vars"):
        raise ConfigError(f"{where}: unknown key {leaf!r} in {'.'.join(path)}; known keys: {', '.join(sorted(node))}")
    if not path and leaf not in node:
        raise ConfigError(f"{where}: unknown key {leaf!r}; known top-level keys: {', '.join(sorted(node))}")
    node[leaf] = value


class RerunToResume(KeyboardInterrupt):
    """Ctrl-C in a sweep or a search: its parent run is KILLED; rerunning the same command resumes it."""

    def __init__(self, what: str, parent: str):
        super().__init__(f"{what} interrupted")
        self.rerun = f"{what} interrupted; rerun the same command to resume it (parent run {parent})"


def job_dir(root: str, parent_id: str, job: Job) -> str:
    return os.path.join(root, parent_id, re.sub(r"[^A-Za-z0-9_.=-]+", "_", job.key))


def job_config(base: dict, job: Job, root: str, parent_id: str) -> dict:
    """The plain config mapping of one job (its own seed, chip instance, folder, child run)."""
    d = copy.deepcopy(base)
    d["sweep"] = {"name": None}
    for axis, value in job.point:
        set_key(d, axis, value)
    n_chips = d["topology"]["n_chips"]
    d["seed"] = job.seed
    d["topology"]["chip_seeds"] = [job.seed + 1000 * k for k in range(n_chips)]
    d["trainer"]["kind"] = job.trainer
    if job.needs:
        d["trainer"]["masks_from"] = os.path.join(
            job_dir(root, parent_id, Job(job.needs, "ideal", job.seed, ())), "phases.npz"
        )
    d["output_dir"] = job_dir(root, parent_id, job)
    d["tracking"] |= {
        "parent_run_id": parent_id,
        "run_name": job.key,
        "tags": {"sweep.job": job.key, "sweep.name": base["sweep"]["name"]},
    }
    ckpt = os.path.join(d["output_dir"], "checkpoints", "latest.npz")
    d["resume"] = ckpt if os.path.exists(ckpt) else None  # a job cut off mid-way continues
    return d


def sweep_fingerprint(base: dict) -> str:
    """Hash of what the sweep computes (not where it logs, runs or writes), with the noise-stream
    version, so a resumed sweep never reuses runs drawn with other streams."""
    d = {k: v for k, v in base.items() if k not in ("tracking", "cluster", "debug", "resume", "output_dir", "paths")}
    d["sweep"] = {k: v for k, v in base["sweep"].items() if k not in ("max_parallel", "resume", "root", "stop_after")}
    d["noise_streams"] = measurement.NOISE_STREAM_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def absolute_paths(base: dict) -> dict:
    """Jobs run in other processes (and hosts): every path and the tracking URI made absolute."""
    uri = base["tracking"]["uri"] or default_uri(base["paths"]["root"])
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
    base["tracking"]["uri"] = uri
    base["sweep"]["root"] = os.path.abspath(base["sweep"]["root"])
    base["search"]["root"] = os.path.abspath(base["search"]["root"])
    return base


def _check_jobs(base: dict, jobs: list[Job]) -> None:
    """Every job's config must load and plan before any job starts."""
    from pipeline.run.build import load_split, make_plan

    n_classes = load_split(load_config(job_config(base, jobs[0], "/nonexistent", "check"))).n_classes
    for job in jobs:
        make_plan(load_config(job_config(base, job, "/nonexistent", "check")), n_classes)


def _run_job(job_cfg: dict) -> dict:
    """A Ray task: one full training run (its chips are actors of their own)."""
    from pipeline.run.driver import train

    return train(job_cfg)


def run_sweep(cfg: RunConfig) -> dict:
    """Run (or resume) the sweep ``cfg.sweep``; returns {parent_run_id, done, failed, report}.
    The parent run ends FINISHED, FAILED (a job failed, or the sweep itself) or KILLED (stopped
    early, or Ctrl-C: rerunning the same command resumes it)."""
    base = absolute_paths(dataclasses.asdict(cfg))
    sw = cfg.sweep
    if cfg.tracking.kind != "mlflow":
        raise ConfigError("sweeps record their jobs in MLflow: use tracking=mlflow")
    jobs = expand(sw)
    _check_jobs(base, jobs)
    record = SweepRecord(base["tracking"]["uri"], cfg.tracking.experiment)
    try:
        parent, resumed = record.open(sw.name, sweep_fingerprint(base), sw.resume, flat_config(base))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        with tracked_run(record) as run:
            failed, stopped, files = _run_jobs(cfg, base, jobs, record, resumed)
            run.status = "KILLED" if stopped else ("FAILED" if failed else "FINISHED")
    except KeyboardInterrupt:
        raise RerunToResume(f"sweep {sw.name}", parent) from None
    return {
        "parent_run_id": parent,
        "jobs": len(jobs),
        "failed": failed,
        "stopped": stopped,
        "report": files,
        "tracking_uri": record.uri,
    }


def _run_jobs(cfg: RunConfig, base: dict, jobs: list[Job], record: SweepRecord, resumed: bool):
    """The jobs not finished yet, on the cluster, then the report; returns (failed, stopped, report files)."""
    import ray

    from pipeline.run.build import start_ray

    sw, parent = cfg.sweep, record.run_id
    done = record.finished_jobs(parent)
    todo = [j for j in jobs if j.key not in done]
    print(
        f"sweep {sw.name}: parent run {parent} ({'resumed' if resumed else 'new'}), {len(jobs)} jobs, "
        f"{len(jobs) - len(todo)} already finished",
        flush=True,
    )
    start_ray(cfg)
    per_job = cfg.topology.n_chips * max(cfg.chip.num_cpus, 1e-3)
    width = sw.max_parallel or max(1, int(ray.cluster_resources().get("CPU", 1) // per_job))
    task = ray.remote(num_cpus=0, max_retries=1)(_run_job)
    failed, stopped = _schedule(task, base, todo, set(done), parent, width, sw.stop_after)
    files = report_sweep(record.uri, parent, os.path.join(sw.root, parent, "report"))
    print(f"report: {os.path.dirname(files[0])}" if files else "report: no finished job to report", flush=True)
    return failed, stopped, files


def _schedule(
    task, base: dict, todo: list[Job], done: set, parent: str, width: int, stop_after: int | None
) -> tuple[dict, bool]:
    """Keep ``width`` jobs running; an insilico job waits for its masks. Returns (failed, stopped)."""
    import ray

    root, running, failed, finished = base["sweep"]["root"], {}, {}, 0
    pending, started = list(todo), time.perf_counter()
    while pending or running:
        for job in [j for j in pending if j.needs is None or j.needs in done][: width - len(running)]:
            pending.remove(job)
            running[task.remote(job_config(base, job, root, parent))] = (job, time.perf_counter())
        if not running:  # what is left waits on masks that failed
            for job in pending:
                failed[job.key] = f"not run: {job.needs} failed"
            break
        ready, _ = ray.wait(list(running), num_returns=1)
        job, t0 = running.pop(ready[0])
        try:
            summary = ray.get(ready[0])
            done.add(job.key)
            acc = summary_accuracy(summary)
            line = f"done {job.key}: test accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)"
        except Exception as exc:  # noqa: BLE001  (a failed job is recorded; the sweep goes on)
            failed[job.key] = str(exc).strip().splitlines()[-1][:300]
            line = f"FAILED {job.key}: {failed[job.key]}"
        finished += 1
        print(f"  [{finished}/{len(todo)}] {line}{time_left(started, finished, len(todo))}", flush=True)
        if stop_after is not None and finished >= stop_after:
            for ref in running:
                ray.cancel(ref, force=True)
            return failed, True
    return failed, False


def time_left(started: float, finished: int, total: int) -> str:
    """``, about N min left`` at the rate jobs have finished so far (all widths included)."""
    if finished >= total:
        return ""
    left_s = (time.perf_counter() - started) / finished * (total - finished)
    return f", about {left_s / 60:.0f} min left" if left_s >= 90 else f", about {left_s:.0f} s left"


def flat_config(base: dict) -> dict[str, str]:
    from pipeline.run.build import flat_params

    return {
        k: v
        for k, v in flat_params(load_config(base)).items()
        if not k.startswith(("tracking.", "debug.", "resume", "output_dir"))
    }
