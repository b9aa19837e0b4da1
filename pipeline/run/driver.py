"""``train(cfg)``: the main job. Builds everything, runs the rounds, reports and checkpoints."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import zipfile

import numpy as np
from tqdm import tqdm

from pipeline.config import ConfigError, RunConfig, load_config
from pipeline.reports import run_report as report
from pipeline.run import checkpoint
from pipeline.run.build import (
    attach_hardware,
    check_cluster,
    fingerprint,
    flat_params,
    load_split,
    make_plan,
    make_tracker,
    make_workers,
    run_description,
    run_tags,
    start_ray,
)
from pipeline.run.coordinator import EvalResult, Target, TrainState, batch_indices, end_epoch, init_state, step
from pipeline.run.dataset import hold_split
from pipeline.run.hardware import attached_lines, evaluation_counters, report_at_start, split_calibrations
from pipeline.run.preflight import check_inputs, check_output_dir, finite_phases
from pipeline.run.rounds import stop_actors
from pipeline.run.topologies import make_topology
from pipeline.tracking.lifecycle import tracked_run

RUN_ID = re.compile(r"[0-9a-f]{32}")  # an MLflow run id
HISTORY = {"loss": "batch_loss", "accuracy": "batch_accuracy", "grad_fidelity_cosine": "fidelity_cosine"}


@dataclasses.dataclass
class Session:
    """What the round loop needs: typed plan, actors, tracker, sizes, paths."""

    cfg: RunConfig
    plan: object
    topo: object  # DataParallel or LayerPipeline: the chip actors
    tracker: object
    n_train: int
    batches_per_epoch: int
    total_rounds: int
    ckpt_path: str
    history: dict
    split_ref: object = None  # held for the run: restarted actors re-read their arguments
    split: object = None  # the task's split (figures: the test samples' true classes)
    latest: TrainState | None = None
    logging_s: float = 0.0
    on_epoch: object = (
        None  # on_epoch(epoch, val_accuracy, checkpoint path, run id, last) after each epoch's checkpoint
    )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: the state was checkpointed; ``resume`` continues it."""

    def __init__(self, round_index: int, resume: str):
        super().__init__(f"interrupted at round {round_index}")
        self.round_index, self.resume = round_index, resume


def train(raw_cfg, on_epoch=None) -> dict:
    """Run one training job from a config mapping (Hydra's or a dict) or a RunConfig; returns the summary.
    ``on_epoch(epoch, val_accuracy, checkpoint_path, run_id, last)`` is called after each epoch's
    validation and checkpoint (a search reports to Ray Tune there; ``last``: the final test comes
    next); a KeyboardInterrupt it raises stops the run as Ctrl-C does (checkpointed, KILLED).

    Every check runs before Ray starts or an MLflow run exists: the config, the chips'
    propagation and memory (:mod:`pipeline.run.preflight`), the tracking server, the resume
    source, the output folder, the hardware the chips drive (a rig: reached and checked, an
    emulated one started first and stopped when the run ends, however it ends); then the
    cluster's resources, and each chip actor is pinged once created, so a constructor error
    is one line. A rejected run leaves nothing behind.
    The run then lives in :func:`pipeline.tracking.lifecycle.tracked_run`: it ends FINISHED,
    FAILED or KILLED (Ctrl-C: checkpointed, :class:`Interrupted` raised), the actors stopped.
    """
    cfg = raw_cfg if isinstance(raw_cfg, RunConfig) else load_config(raw_cfg)
    out_dir = cfg.output_dir or os.path.join("outputs", time.strftime("%Y-%m-%d_%H-%M-%S"))
    cfg = dataclasses.replace(cfg, output_dir=out_dir)
    check_inputs(cfg)  # cheap checks first (the CLI ran them too)
    split = load_split(cfg)
    plan = make_plan(cfg, split.n_classes, len(split.train))  # every check passes before Ray starts
    for note in plan.notes:
        print(f"ffm-train: warning: {note}", file=sys.stderr)
    with attach_hardware(plan) as plan:  # rigs: emulated ones started, every one checked; stopped at the end
        return _run(cfg, plan, split, on_epoch)


def _run(cfg: RunConfig, plan, split, on_epoch=None) -> dict:
    """The chips started, the run tracked from start to finish (see :func:`train`)."""
    tracker = make_tracker(cfg)
    for line in attached_lines(plan):
        tracker.event(line, echo=False)  # where each rig is: for the record
    state, run_id = _initial_state(cfg, plan, tracker)  # resume and masks checked: nothing written before
    tracker.prepare_in_background()  # MLflow's imports and store, while Ray starts
    topo, split_ref = _start_chips(cfg, plan, split, tracker)
    sess = _session(cfg, plan, topo, tracker, split, split_ref)
    sess.on_epoch = on_epoch
    params = flat_params(cfg) | report.plan_params(plan)  # the plan's quantities: what the reports compute from
    release = functools.partial(stop_actors, topo.workers)
    with tracked_run(tracker, params, run_tags(cfg), run_id, release=release):
        if cfg.resume:
            tracker.event(f"resumed at round {state.round} from {cfg.resume}")
        if cfg.tracking.kind == "mlflow":  # the digest reads the whole split
            tracker.log_input(report.dataset_input(cfg, split))
        report_at_start(sess, state, len(split.val) + len(split.test))  # rigs: projected epoch, calibrations
        t0 = time.perf_counter()
        state = _loop(sess, state)
        return _finish(sess, state, time.perf_counter() - t0)


def _start_chips(cfg: RunConfig, plan, split, tracker) -> tuple[object, object]:
    """The cluster checked, the dataset in the object store, the chip actors up and pinged;
    returns (topology, dataset ref). On failure, an output folder this call created is removed."""
    created = check_output_dir(cfg.output_dir)
    try:
        start_ray(cfg)
        check_cluster(cfg)
        split_ref = hold_split(split)  # one holder actor: restarted chips fetch the split again
        return make_topology(plan, cfg, split, split_ref, tracker.event, make_workers), split_ref  # pings every chip
    except BaseException:
        if created:
            shutil.rmtree(cfg.output_dir, ignore_errors=True)
        raise


def _session(cfg: RunConfig, plan, topo, tracker, split, split_ref) -> Session:
    n_batches = math.ceil(len(split.train) / cfg.trainer.batch_size)
    total = n_batches * cfg.trainer.epochs
    if cfg.trainer.max_rounds:
        total = min(total, cfg.trainer.max_rounds)
    if cfg.trainer.masks_from:  # deploy trained masks: evaluation only
        total = 0
    ckpt_path = os.path.join(cfg.output_dir, "checkpoints", "latest.npz")
    return Session(cfg, plan, topo, tracker, len(split.train), n_batches, total, ckpt_path, {}, split_ref, split)


def _initial_state(cfg: RunConfig, plan, tracker) -> tuple[TrainState, str | None]:
    chips = [spec.index for spec in plan.chips]
    if not cfg.resume:
        state = init_state(plan.groups, plan.optimizer, cfg.trainer.train_amplitude, chips, plan.init, cfg.seed)
        if cfg.trainer.masks_from:
            params = load_masks(cfg.trainer.masks_from, plan.groups)
            state = dataclasses.replace(state, params=params, best_params=params)
        return state, None
    path = cfg.resume
    if RUN_ID.fullmatch(path) and not os.path.exists(path):  # an MLflow run id: fetch its last checkpoint
        tmp = tempfile.mkdtemp(prefix="ffm-resume-")
        tracker.download(cfg.resume, "checkpoint", tmp)
        path = os.path.join(tmp, "checkpoint", "latest.npz")
    elif not os.path.exists(path):
        raise checkpoint.CheckpointError(
            f"resume={path} is neither a checkpoint file nor an MLflow run id "
            "(32 hex digits); pass outputs/<run>/checkpoints/latest.npz or the run id"
        )
    state, meta = checkpoint.load(path)
    checkpoint.check_noise_streams(meta, cfg.resume)  # before the fingerprint, which also carries it
    if meta["config"] != fingerprint(cfg):
        raise checkpoint.CheckpointError(
            f"resume={cfg.resume} was written by a different configuration; "
            "resume with the same overrides as the original run"
        )
    if sorted(state.params) != sorted(plan.groups):
        raise checkpoint.CheckpointError(
            f"resume={cfg.resume} holds groups {sorted(state.params)}, this run "
            f"trains {sorted(plan.groups)}; resume with the original overrides"
        )
    return state, meta["run_id"]


def load_masks(path: str, groups: dict[str, tuple]) -> dict:
    """Trained parameters from a run's ``phases.npz`` (keys ``<group>/<name>``), checked against ``groups``."""
    if not os.path.exists(path):
        raise ConfigError(f"trainer.masks_from={path} does not exist; point it at a finished run's phases.npz")
    params: dict = {}
    try:
        with np.load(path, allow_pickle=False) as f:
            for key in f.files:
                if "/" not in key:
                    raise ConfigError(
                        f"trainer.masks_from={path} has an entry {key!r}, not <group>/<name>; "
                        "point it at a finished run's phases.npz"
                    )
                group, name = key.split("/", 1)
                params.setdefault(group, {})[name] = f[key].astype(np.float64)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"trainer.masks_from={path} is not a readable .npz ({exc}); point it at a finished run's phases.npz"
        ) from None
    finite_phases(params, f"trainer.masks_from={path}")
    for group, shape in groups.items():
        got = params.get(group, {}).get("phase")
        if got is None or got.shape != tuple(shape):
            raise ConfigError(
                f"trainer.masks_from={path} has no {group}/phase of shape {tuple(shape)}; "
                "deploy masks trained with the same chip geometry and topology"
            )
    return {g: params[g] for g in groups}


def _loop(sess: Session, state: TrainState) -> TrainState:
    interactive = sys.stderr.isatty()  # in job logs and CI, a line every 30 s is enough
    bar = tqdm(
        total=sess.total_rounds,
        initial=state.round,
        unit="round",
        dynamic_ncols=True,
        mininterval=0.2 if interactive else 30.0,
    )
    with bar:
        try:
            return _rounds(sess, state, bar)
        except KeyboardInterrupt:  # Ctrl-C: keep everything done so far
            _checkpoint(sess, sess.latest)
            sess.tracker.event(f"interrupted at round {sess.latest.round}; resume with resume={sess.ckpt_path}", False)
            raise Interrupted(sess.latest.round, sess.ckpt_path) from None


def _rounds(sess: Session, state: TrainState, bar) -> TrainState:
    cfg, t = sess.cfg, sess.cfg.trainer
    while state.epoch < t.epochs:
        sess.latest = state  # what a Ctrl-C checkpoints
        if state.position < sess.batches_per_epoch and state.round < sess.total_rounds:
            if cfg.debug.interrupt_round == state.round:
                raise KeyboardInterrupt
            if cfg.debug.kill_round == state.round:  # fault injection: a driver lost without a word
                os.kill(os.getpid(), signal.SIGKILL)
            state, metrics = _round(sess, state)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", batch_acc=f"{metrics['accuracy']:.2f}")
            if state.round % cfg.checkpoint_every == 0:
                _checkpoint(sess, state)
            continue
        state = _validate(sess, state)
        bar.write(f"epoch {state.epoch}: val accuracy {sess.history['val_mean'][-1][1]:.3f}")
        _checkpoint(sess, state)
        sess.latest = state  # validated: what a stop from on_epoch checkpoints
        if sess.on_epoch is not None:  # last: the final test follows (the epochs, or trainer.max_rounds, are done)
            last = state.epoch >= cfg.trainer.epochs or state.round >= sess.total_rounds
            sess.on_epoch(state.epoch, sess.history["val_mean"][-1][1], sess.ckpt_path, sess.tracker.run_id, last)
        if state.round >= sess.total_rounds:
            break
    return state


def _round(sess: Session, state: TrainState) -> tuple[TrainState, dict]:
    cfg, plan = sess.cfg, sess.plan
    batch = batch_indices(cfg.seed, state.epoch, state.position, sess.n_train, cfg.trainer.batch_size)
    every = cfg.trainer.fidelity_every
    fidelity = plan.train_on == Target.CHIP and every > 0 and state.round % every == 0
    t0 = time.perf_counter()
    grads, metrics, alive = sess.topo.run_round(state.params, state.alive, batch, state.round, fidelity)
    if alive != state.alive:
        state = dataclasses.replace(state, alive=alive)
    t_update = time.perf_counter()
    state = step(state, grads, plan.optimizer, sess.batches_per_epoch)
    now = time.perf_counter()
    metrics |= {
        "update_s": now - t_update,
        "logging_s": sess.logging_s,  # logging: the previous round's
        "overhead_frac": max(0.0, 1.0 - metrics["slowest_chip_s"] / (now - t0)),
    }
    calibrations = split_calibrations(metrics)  # a rig's, made during the round
    sess.tracker.log_round(state.round, metrics)
    if calibrations:
        sess.tracker.log_metrics(calibrations, step=state.round)
    sess.logging_s = time.perf_counter() - now
    for key, name in HISTORY.items():  # the learning-curves figure
        if key in metrics:
            sess.history.setdefault(name, []).append((state.round, metrics[key]))
    return state, metrics


def _validate(sess: Session, state: TrainState) -> TrainState:
    cfg, plan = sess.cfg, sess.plan
    metrics = {}
    for subset in ("val", "test"):
        res, alive = sess.topo.evaluate(
            state.params, state.alive, subset, state.round, plan.deploy_on, cfg.trainer.eval_batch_size
        )
        state = dataclasses.replace(state, alive=alive)
        for name, r in res.items():
            metrics[f"{subset}_accuracy/{name}"] = r.accuracy
            sess.history.setdefault(f"{subset}_accuracy/{name}", []).append((state.round, r.accuracy))
        metrics[f"{subset}_accuracy/mean"] = float(np.mean([r.accuracy for r in res.values()]))
        metrics |= evaluation_counters(res, f"{subset}_")  # a rig's frames, writes, seconds
    sess.history.setdefault("val_mean", []).append((state.round, metrics["val_accuracy/mean"]))
    sess.tracker.log_metrics(metrics, step=state.epoch + 1)  # per-epoch charts: step = epochs done
    report.log_epoch_images(sess, state)
    sess.tracker.log_metrics({"epoch": state.epoch + 1}, step=state.round)  # which round ended it
    return end_epoch(state, metrics["val_accuracy/mean"])


def _checkpoint(sess: Session, state: TrainState) -> None:
    checkpoint.save(sess.ckpt_path, state, sess.tracker.run_id, fingerprint(sess.cfg))
    sess.tracker.log_file(sess.ckpt_path, "checkpoint")
    sess.tracker.log_file(sess.ckpt_path + ".sha256", "checkpoint")


def _finish(sess: Session, state: TrainState, wall_s: float) -> dict:
    """Test the best-validation phases on every chip (and the twin), log artifacts, write summary.json."""
    state, test, twin = _final_tests(sess, state)
    summary = _summary(sess, state, test, twin, wall_s)
    detected = {
        f"final_detected_fraction/{name}": r.detected_fraction  # twin: noise-free
        for name, r in list(test.items()) + [("twin", twin)]
        if r.detected_fraction is not None
    }
    sess.tracker.log_metrics(
        {f"final_test_accuracy/{name}": r.accuracy for name, r in test.items()}
        | detected
        | evaluation_counters(test, "final_test_")
        | {"final_test_accuracy/twin": summary["twin_test_accuracy"]},
        step=state.round,
    )
    _write_outputs(sess.cfg.output_dir, summary, state)
    report.log_final_artifacts(sess, state, test)
    sess.tracker.set_description(run_description(sess.cfg, report.results_table(summary)))
    report.print_summary(summary, sess.tracker)
    return summary


def _final_tests(sess: Session, state: TrainState) -> tuple[TrainState, dict[str, EvalResult], EvalResult]:
    """The best phases tested on the deployment target (with examples) and on the twin."""
    cfg, plan, topo = sess.cfg, sess.plan, sess.topo
    test, alive = topo.evaluate(
        state.best_params,
        state.alive,
        "test",
        state.round + 1,
        plan.deploy_on,
        cfg.trainer.eval_batch_size,
        n_examples=4,
    )
    state = dataclasses.replace(state, alive=alive)
    twin, _ = topo.evaluate(
        state.best_params, state.alive, "test", state.round + 1, Target.TWIN, cfg.trainer.eval_batch_size
    )
    return state, test, next(iter(twin.values()))


def _summary(sess: Session, state: TrainState, test: dict[str, EvalResult], twin: EvalResult, wall_s: float) -> dict:
    cfg, plan = sess.cfg, sess.plan
    where = sess.topo.locate(state.alive)
    per_chip = {
        name: {
            "test_accuracy": r.accuracy,
            **({"subtask_accuracy": r.subtask_accuracy} if r.subtask_accuracy is not None else {}),
            **where.get(name, {}),
        }
        for name, r in test.items()
    }
    return {
        "trainer": cfg.trainer.kind,
        "deployed_on": plan.deploy_on,
        "chips": per_chip,
        "twin_test_accuracy": twin.accuracy,
        "rounds": state.round,
        "epochs": state.epoch,
        "wall_seconds": wall_s,
        "run_id": sess.tracker.run_id,
        "tracking_uri": sess.tracker.uri,
        "best_val_accuracy": state.best_val,
        "dropped_chips": sorted(set(range(len(plan.chips))) - set(state.alive)),
        "events": sess.tracker.events,
        "output_dir": cfg.output_dir,
    }


def _write_outputs(out_dir: str, summary: dict, state: TrainState) -> None:
    """summary.json and the best phases (phases.npz, what trainer.masks_from deploys) in the output folder."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    np.savez(
        os.path.join(out_dir, "phases.npz"),
        **{f"{g}/{k}": v for g, p in state.best_params.items() for k, v in p.items()},
    )
