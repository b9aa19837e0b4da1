"""Hyperparameter search on Ray Tune with Optuna: ``ffm-train hparams_search=<name>``.

:func:`run_search`

1. checks the search space, the objective, ASHA's settings and the first trial's whole
   configuration (:mod:`pipeline.search.space`, the training plan), then how many trials the
   cluster can place at once: bad input is one line before any trial or MLflow run;
2. opens the search's MLflow parent run, or finds the unfinished one with the same
   configuration (rerunning the command resumes the search: Tune's state is restored from
   ``<search.root>/<parent run id>`` and unfinished trials continue from their last epoch);
3. runs the trials on Ray Tune: Optuna's TPE samples them (the configuration's own values
   first), ASHA stops the ones behind at epoch boundaries, each trial is a normal training
   run (:mod:`pipeline.search.trial`) whose chips live in the trial's placement group;
   a failed trial is recorded and the search goes on;
4. writes the report (:mod:`pipeline.search.report`) to disk and to the parent run, with the
   best configuration as tags and the trials' statuses on their own runs.

TPE settings are explicit (multivariate, constant liar for concurrent trials, ``startup_trials``
random trials first), so the search does not change with Optuna's defaults: these are the
defaults Optuna 5 chose, and the constant liar keeps concurrent trials from sampling the same
region while earlier ones still run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import signal

from ray.tune import Callback

from pipeline.config import ConfigError, RunConfig, load_config
from pipeline.search import report
from pipeline.search.space import Param, check_search, default_point
from pipeline.search.trial import run_trial, trial_config
from pipeline.sweeps.grid import RerunToResume, absolute_paths, flat_config, sweep_fingerprint
from pipeline.tracking.lifecycle import tracked_run
from pipeline.tracking.runs import SweepRecord

STATUS_TAG = "search.status"


def search_fingerprint(base: dict) -> str:
    """What the search computes: the configuration without where it writes or how it is interrupted."""
    d = copy.deepcopy(base)
    d["search"] = {k: v for k, v in base["search"].items() if k not in ("resume", "root", "kill_after_trials")}
    return sweep_fingerprint(d)


def trial_resources(cfg: RunConfig) -> list[dict]:
    """The placement group of one trial: an empty bundle for the trial itself, one per chip."""
    from pipeline.chips.base import resources_of
    from pipeline.run.build import chip_system

    c = cfg.chip
    chip = {"CPU": c.num_cpus, "GPU": c.num_gpus} | resources_of(chip_system(cfg), c.resources)
    return [{"CPU": 0}] + [{k: v for k, v in chip.items() if v}] * cfg.topology.n_chips


def concurrency(cfg: RunConfig, cluster: dict, only_known: bool = False) -> int:
    """Trials at once: ``search.max_concurrent`` or what ``cluster`` (Ray resources) holds; a
    request the cluster cannot place is one line naming the key. ``only_known``: judge only the
    resources ``cluster`` names (an estimate of a local cluster before it starts)."""
    need: dict = {}
    for bundle in trial_resources(cfg)[1:]:
        for k, v in bundle.items():
            if k in cluster or not only_known:
                need[k] = need.get(k, 0) + v
    fits = min((int(cluster.get(k, 0) // v) for k, v in need.items() if v), default=cfg.search.trials)
    if fits < 1:
        raise ConfigError(
            f"one trial needs {need} but the cluster holds { ({k: cluster.get(k, 0) for k in need}) }; "
            "use fewer chips per trial (topology.n_chips) or a larger cluster"
        )
    asked = cfg.search.max_concurrent
    if asked is not None and asked > fits:
        raise ConfigError(
            f"search.max_concurrent={asked} but the cluster places {fits} trial(s) of {need} at once; "
            f"set search.max_concurrent<={fits} or leave it unset"
        )
    return min(asked or fits, cfg.search.trials)


def _check(cfg: RunConfig, base: dict, promoted: dict | None) -> list[Param]:
    """Every check a bad value fails, before Ray or MLflow: the search, then trial 0's training
    plan, on the simulated chip and (promotion) on the promoted one."""
    from pipeline.run.build import load_split, make_plan

    if cfg.tracking.kind != "mlflow":
        raise ConfigError("a search records its trials in MLflow: use tracking=mlflow")
    params = check_search(cfg.search, base)
    for where in [base] + ([promoted] if promoted else []):
        first = load_config(trial_config(where, default_point(params, base), "check", "check"))
        make_plan(first, load_split(first).n_classes)
    return params


def run_search(cfg: RunConfig, promoted_cfg: RunConfig | None = None) -> dict:
    """Run (or resume) the search ``cfg.search``; returns the parent run id, the rows and the report
    files. ``promoted_cfg``: the same configuration on the chip the best ``search.top_k`` are
    re-run on (:mod:`pipeline.search.promote`; the composition root makes it)."""
    import ray

    from pipeline.run.build import start_ray
    from pipeline.run.preflight import local_resources

    base = absolute_paths(dataclasses.asdict(cfg))
    promoted = absolute_paths(dataclasses.asdict(promoted_cfg)) if promoted_cfg else None
    params = _check(cfg, base, promoted)
    if cfg.cluster.kind == "local" and not ray.is_initialized():  # what it will hold, before it starts
        concurrency(cfg, {"CPU": cfg.cluster.num_cpus or os.cpu_count()} | local_resources(cfg), only_known=True)
    start_ray(promoted_cfg or cfg)  # a local cluster advertises what the promoted chips need (a rig each)
    width = concurrency(cfg, ray.cluster_resources())
    record = SweepRecord(base["tracking"]["uri"], cfg.tracking.experiment)
    try:
        parent, resumed = record.open(cfg.search.name, search_fingerprint(base), cfg.search.resume, flat_config(base))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        with tracked_run(record) as run:
            rows = _tune(cfg, base, params, parent, width, resumed)
            files = _finish(cfg, record, parent, rows, params)
            promotions = _promote(cfg, promoted, record, parent, rows, params)
            run.status = "FINISHED" if report.best_row(rows) else "FAILED"
    except KeyboardInterrupt:
        raise RerunToResume(f"search {cfg.search.name}", parent) from None
    return {
        "parent_run_id": parent,
        "rows": rows,
        "promoted": promotions,
        "report": files,
        "tracking_uri": record.uri,
        "resumed": resumed,
    }


def _promote(cfg: RunConfig, promoted: dict | None, record, parent: str, rows: list[dict], params) -> list[dict]:
    """Re-run the best ``search.top_k`` on the promoted chip; the side-by-side table to the parent run."""
    if promoted is None or report.best_row(rows) is None:
        return []
    from pipeline.search.promote import promote, write_promotion

    keys = [p.key for p in params]
    out = promote(promoted, rows, keys, parent, record)
    files = write_promotion(out, keys, os.path.join(os.path.abspath(cfg.search.root), parent, "report"))
    record.log_files(parent, files, "report")
    for r in out:
        if math.isfinite(r["rig_frames"]):
            record.log_metrics(
                parent,
                {
                    f"promoted/{r['trial']}/test_accuracy": r["rig_test_accuracy"],
                    f"promoted/{r['trial']}/frames": r["rig_frames"],
                },
            )
    with open(files[1]) as f:
        print(f.read(), flush=True)
    return out


def _tune(cfg: RunConfig, base: dict, params: list[Param], parent: str, width: int, resumed: bool) -> list[dict]:
    from ray import tune

    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C: the search is KILLED and resumable
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # a save per epoch
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 is silent (the new output prints a table)
    storage = os.path.join(base["search"]["root"], parent)
    # the progress callback's settings: also for a restored search, whose callback Tune unpickles
    PROGRESS.update(total=cfg.search.trials, kill_after=cfg.search.kill_after_trials, ended=0)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, parent=parent), tune.PlacementGroupFactory(trial_resources(cfg))
    )
    if resumed and tune.Tuner.can_restore(storage):
        print(f"search {cfg.search.name}: parent run {parent} (resumed from {storage})", flush=True)
        tuner = tune.Tuner.restore(storage, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        print(f"search {cfg.search.name}: parent run {parent}, {cfg.search.trials} trials, {width} at once", flush=True)
        tuner = tune.Tuner(
            trainable, tune_config=_tune_config(cfg, base, params, width), run_config=_run_config(storage)
        )
    results = tuner.fit()
    keys = [p.key for p in params]
    return report.trial_rows(results, keys)  # in the order Tune created them


def _tune_config(cfg: RunConfig, base: dict, params: list[Param], width: int):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    s = cfg.search
    sampler = optuna.samplers.TPESampler(
        seed=s.seed, n_startup_trials=s.startup_trials, multivariate=True, constant_liar=True
    )
    searcher = OptunaSearch(
        space={p.key: _distribution(p) for p in params},
        metric=s.objective,
        mode="max",
        sampler=sampler,
        points_to_evaluate=[default_point(params, base)] if s.default_first else None,
    )
    asha = ASHAScheduler(
        time_attr="training_iteration",
        max_t=base["trainer"]["epochs"],
        grace_period=s.grace_epochs,
        reduction_factor=s.reduction_factor,
    )
    return tune.TuneConfig(
        metric=s.objective,
        mode="max",
        search_alg=searcher,
        scheduler=asha,
        num_samples=s.trials,
        max_concurrent_trials=width,
        time_budget_s=s.time_budget_s,
    )


def _distribution(p: Param):
    import optuna.distributions as d

    if p.kind == "choice":
        return d.CategoricalDistribution(list(p.values))
    if p.kind == "int":
        return d.IntDistribution(int(p.low), int(p.high))
    return d.FloatDistribution(p.low, p.high, log=p.kind == "loguniform")


def _run_config(storage: str):
    from ray import tune

    root, name = os.path.split(storage)
    return tune.RunConfig(
        name=name,
        storage_path=root,
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[Progress()],
    )


# what the progress callback reads: set by each call of _tune, so a search Tune restores (with the
# callback pickled in its state) counts and kills by this command's settings, not the first one's
PROGRESS = {"total": 0, "kill_after": None, "ended": 0}


class Progress(Callback):
    """One line per trial that ends (n/N, its values, how it ended). ``search.kill_after_trials``:
    SIGKILL this driver when a trial starts after that many ended (fault-injection tests of
    resume; Tune has saved its state by then where ``TUNE_GLOBAL_CHECKPOINT_S`` is short).
    Its settings are :data:`PROGRESS` (module level, and the class is pickled by reference, so a
    restored search's unpickled callback reads this command's settings)."""

    def _line(self, trial, how: str) -> None:
        PROGRESS["ended"] += 1
        shown = ", ".join(
            f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items()
        )
        print(f"  trial {PROGRESS['ended']}/{PROGRESS['total']} {trial.trial_id} ({shown}): {how}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        if PROGRESS["kill_after"] is not None and PROGRESS["ended"] >= PROGRESS["kill_after"]:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_trial_complete(self, iteration, trials, trial, **info):
        r = trial.last_result or {}
        how = f"test accuracy {r['test_accuracy']:.3f}" if "test_accuracy" in r else "stopped early"
        val = r.get("val_accuracy", float("nan"))
        self._line(trial, f"{how} after {r.get('training_iteration', 0)} epoch(s), val {val:.3f}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "FAILED")


def _finish(cfg: RunConfig, record: SweepRecord, parent: str, rows: list[dict], params: list[Param]) -> list[str]:
    """The report files on disk and in the parent run; best configuration and counts on the parent;
    each trial's status as a tag on its own run."""
    keys = [p.key for p in params]
    out = os.path.join(os.path.abspath(cfg.search.root), parent, "report")
    files = report.write_report(rows, keys, out, f"{cfg.search.name} ({parent[:8]})")
    record.log_files(parent, files, "report")
    _close_orphans(record, parent, {r["run_id"] for r in rows})
    for r in rows:
        if r["run_id"]:
            record.set_tags(r["run_id"], {STATUS_TAG: r["status"]})
        if r["run_id"] and r["status"] == report.STOPPED:  # however Tune's stop reached the trial
            record.close(r["run_id"], "KILLED")
    counts = {
        f"search/trials_{s.replace(' ', '_')}": sum(r["status"] == s for r in rows)
        for s in (report.FINISHED, report.STOPPED, report.FAILED)
    }
    best = report.best_row(rows)
    metrics = dict(counts)
    if best is not None:
        metrics |= {
            "search/best_val_accuracy": best["val_accuracy"],
            "search/best_test_accuracy": best["test_accuracy"],
        }
        record.set_tags(parent, {f"search.best.{k}": best[k] for k in keys} | {"search.best_trial": best["trial"]})
    record.log_metrics(parent, metrics)
    print(report.markdown(rows, keys, f"{cfg.search.name} ({parent[:8]})"), flush=True)
    print(f"report: {out}", flush=True)
    return files


def _close_orphans(record: SweepRecord, parent: str, kept: set[str]) -> None:
    """Child runs a killed driver left RUNNING that no trial continued (a trial restarted from
    scratch opens a new run): KILLED, tagged as superseded."""
    for run_id in set(record.running_children(parent)) - kept:
        record.set_tags(run_id, {STATUS_TAG: "superseded (the search was resumed)"})
        record.close(run_id, "KILLED")
