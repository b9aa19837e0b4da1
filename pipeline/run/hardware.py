"""What instrumented chips (rigs) tell the run: counted in the workers, logged by the driver.

At start, every instrumented chip reports its rig seconds per sample (its timing model:
settles, frames and exposure of its scheme, after the start-up calibrations), those
calibrations and what they counted (:meth:`pipeline.run.actors.ChipWorker.hardware_report`,
through the fault path). From the slowest rig the driver projects one epoch::

    T_epoch = R * ceil(B / K) * t_train  +  (N_val + N_test) * t_infer

with ``R`` rounds per epoch, ``B`` the batch split over ``K`` chips (each rig measures its
shard; they run side by side), ``t_train`` rig seconds per training sample (FFM: the data and
error pass; PAT: the data pass alone, the same ``L`` hops as an inference sample, its error pass
runs on the twin), and every chip evaluating the validation and test sets each epoch at ``t_infer`` per
sample (a term is zero when the trainer does not run that part on the chip). It is printed
once and logged (``rig/projected_epoch_s``); per round the counters (``round/rig/frames``,
``round/rig/slm_writes``, ``round/rig/rig_seconds``, ...) and each calibration
(``calibration/chip{k}/<name>/<value>``) follow.
"""

from __future__ import annotations

import math

from pipeline.run.coordinator import CALIBRATIONS, COUNTERS, Step, Target, calibration_metrics, summed_counters
from pipeline.run.trainers import TRAIN_STEP

STARTUP = "startup/"  # the start-up counters: startup/rig/frames, ...
CHIP_SECONDS = {Step.FORWARD_ONLY: "train", Step.PHYSICS_AWARE: "infer"}  # a training sample's rig cost, per step


def attached_lines(plan) -> list[str]:
    """One event per chip that drives a rig: where its rig is (and whether this run started it)."""
    return [
        f"chip {spec.index}: rig at {spec.rig.address}" + (" (emulated for this run)" if spec.rig.emulator else "")
        for spec in plan.chips
        if spec.rig is not None
    ]


def project_epoch(
    seconds: list[dict],
    rounds: int,
    per_chip: int,
    n_eval: int,
    train_on_chip: bool,
    deploy_on_chip: bool,
    step: Step = Step.FORWARD_ONLY,
) -> dict[str, float]:
    """The projected rig seconds of one epoch (module docstring) from each chip's seconds per sample;
    a training sample costs what ``step`` runs on the rig (:data:`CHIP_SECONDS`)."""
    train_s = max(float(s[CHIP_SECONDS[step]]) for s in seconds)
    infer_s = max(float(s["infer"]) for s in seconds)
    train = rounds * per_chip * train_s if train_on_chip else 0.0
    evaluation = n_eval * infer_s if deploy_on_chip else 0.0
    return {
        f"{COUNTERS}projected_epoch_s": train + evaluation,
        f"{COUNTERS}projected_train_s": train,
        f"{COUNTERS}projected_eval_s": evaluation,
        f"{COUNTERS}seconds_per_train_sample": train_s,
        f"{COUNTERS}seconds_per_infer_sample": infer_s,
    }


def duration(seconds: float) -> str:
    """``1.5 h``, ``12 min``, ``40 s``."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def projection_line(p: dict[str, float], rounds: int, per_chip: int, n_eval: int) -> str:
    """The console line of a projection."""
    return (
        f"ffm-train: rig time: {duration(p[f'{COUNTERS}projected_epoch_s'])} per epoch projected "
        f"({rounds} rounds x {per_chip} samples x {p[f'{COUNTERS}seconds_per_train_sample']:.3g} s of training "
        f"on each rig, {n_eval} evaluation samples x {p[f'{COUNTERS}seconds_per_infer_sample']:.3g} s)"
    )


def report_at_start(sess, state, n_eval: int) -> dict[str, float] | None:
    """Ask the instrumented chips for their reports; print and log the projected epoch, the
    start-up calibrations and counters. Returns the projection (None: no instrumented chip)."""
    plan, cfg = sess.plan, sess.cfg
    per_chip = -(-cfg.trainer.batch_size // max(len(state.alive), 1))
    reports = sess.topo.hardware_reports(state.alive, per_chip)
    if not reports:
        return None
    rounds = sess.batches_per_epoch
    projection = project_epoch(
        [r["seconds_per_sample"] for r in reports.values()],
        rounds,
        per_chip,
        n_eval,
        plan.train_on == Target.CHIP,
        plan.deploy_on == Target.CHIP,
        TRAIN_STEP[plan.trainer],
    )
    line = projection_line(projection, rounds, per_chip, n_eval)
    print(line, flush=True)
    sess.tracker.event(line.removeprefix("ffm-train: "), echo=False)  # printed above
    startup = {f"{STARTUP}{k}": v for k, v in summed_counters(r["counters"] for r in reports.values()).items()}
    for k in sorted(reports):
        startup |= calibration_metrics(k, reports[k]["calibrations"])
    sess.tracker.log_metrics(projection | startup, step=state.round)
    return projection


def split_calibrations(metrics: dict[str, float]) -> dict[str, float]:
    """Remove the calibration metrics from a round's ``metrics`` and return them (logged without
    the ``round/`` prefix, under the names the start-up calibrations have)."""
    return {k: metrics.pop(k) for k in [k for k in metrics if k.startswith(CALIBRATIONS)]}


def evaluation_counters(results: dict, prefix: str) -> dict[str, float]:
    """The rig counters of an evaluation, summed over chips: ``<prefix>rig/frames``, ..."""
    return {f"{prefix}{k}": v for k, v in summed_counters(r.counters for r in results.values()).items()}
