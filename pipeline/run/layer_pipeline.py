"""Pipeline topology: a deep diffractive network split by layers across K chips.

Chip k holds layers ``[a_k, a_{k+1})``. The data pass flows chip 1 -> K: chip 1 takes the
encoded input through ``P_0``; every later chip receives the previous chip's output-plane
field relay-imaged onto its first layer (a 4f relay between chips, so no ``P_0`` there).
The last chip detects, forms the error field and sends it back through its layers; the
error at its input plane is the error the previous chip continues from
(``e_{k-1} = t_1^{(k)} eps_1^{(k)}``), and so on down to chip 1. Each chip computes the
gradient of its own layers from its own taps: together exactly the one-chip gradient.

Faults: a stage keeps state across the microbatches of a round, so a failure anywhere
(a stage died, restarted or missed the deadline) re-runs the whole round on every stage
(:func:`retry_whole`), with the same inputs and so the same result; counted like any
other chip call (:mod:`pipeline.run.rounds`). A pipeline cannot run without one of its stages,
so ``cluster.on_chip_failure=drop`` is refused for it.

A batch is cut into microbatches; all forward calls are submitted first, then the backward
chains (a GPipe schedule). Fields go from actor to actor as object references: the
coordinator never fetches them. Idle (bubble) fraction per round:
``1 - sum_k busy_k / (K * round_time)``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from optics.core import ffm
from optics.core.data import Split
from optics.core.detectors import detector_scores
from optics.core.measurement import PassKey
from pipeline.run.actors import NO_FAULTS, ChipSpec, FaultPlan, WorkerCore
from pipeline.run.coordinator import EvalResult, StageResult, Target
from pipeline.run.dataset import resolve_split
from pipeline.run.rounds import ChipError, ChipFailure, FailurePolicy, actor_error_line, call_each, new_death


def stage_layers(n_layers: int, n_stages: int) -> list[int]:
    """Layers per stage, as even as possible (5 over 2 -> [3, 2])."""
    if n_stages < 1 or n_stages > n_layers:
        raise ValueError(f"topology=pipeline needs 1 <= n_chips <= n_layers ({n_layers}), got {n_stages}")
    return [len(a) for a in np.array_split(np.arange(n_layers), n_stages)]


class StageWorker:
    """One chip of a layer pipeline (plain class; made a Ray actor by the driver)."""

    def __init__(
        self,
        spec: ChipSpec,
        stage: int,
        n_stages: int,
        split: Split,
        objective: ffm.Objective,
        fault: FaultPlan = NO_FAULTS,
    ):
        self.spec, self.stage, self.last, self.fault = spec, stage, stage == n_stages - 1, fault
        self.split, self.objective = resolve_split(split), objective
        self.core = WorkerCore(spec, relay_input=stage > 0)  # later stages take the relayed field
        self._saved: dict[int, object] = {}
        self._acc: dict = {}
        self._grads: dict[str, object] = {}

    def _input(self, subset, idx, field):
        return self.core.encode(subset.images[idx]) if self.stage == 0 else field

    def forward(self, params: dict, version: int, round_index: int, mb: int, idx: np.ndarray, field, on: Target):
        """Data pass of microbatch ``mb``; the last stage also runs loss and its error pass."""
        t0 = time.perf_counter()
        if mb == 0:
            self.fault.maybe_crash(self.stage, "round", round_index)
            self._acc, self._saved = {"busy_s": 0.0, "loss": 0.0, "correct": 0, "n": 0}, {}
            self._grads = {}
        chip = self.core.program(on, params, version)
        ids = tuple(int(i) for i in self.split.train.ids[idx])
        taps = chip.data_pass(self._input(self.split.train, idx, field), PassKey(round_index, "data", ids))
        if not self.last:
            self._saved[mb] = taps.fields
            self._acc["busy_s"] += time.perf_counter() - t0
            return chip.backend.to_numpy(taps.output)
        labels = self.split.train.labels[idx]
        loss, e, scores = ffm.detector_error(chip, taps, labels, self.objective)
        n = len(idx)
        self._acc["loss"] += loss * n
        self._acc["correct"] += int((chip.backend.to_numpy(scores).argmax(axis=1) == labels).sum())
        self._acc["n"] += n
        self._saved[mb] = taps.fields
        out = self._backward(chip, round_index, mb, ids, e)
        self._acc["busy_s"] += time.perf_counter() - t0
        return out

    def backward(self, round_index: int, mb: int, idx: np.ndarray, error, on: Target):
        """Error pass of microbatch ``mb`` from the error at this chip's output plane."""
        t0 = time.perf_counter()
        chip = self.core.target(on)
        ids = tuple(int(i) for i in self.split.train.ids[idx])
        out = self._backward(chip, round_index, mb, ids, chip.backend.asarray(error))
        self._acc["busy_s"] += time.perf_counter() - t0
        return out

    def _backward(self, chip, round_index, mb, ids, error):
        etaps = chip.error_pass(error, PassKey(round_index, "error", ids), to_input=self.stage > 0)
        grads = ffm.layer_gradients(chip, self._saved.pop(mb), etaps.fields)
        weight = len(ids)
        for name, g in grads.items():
            self._grads[name] = self._grads.get(name, 0.0) + weight * g
        self._acc["weight"] = self._acc.get("weight", 0) + weight
        return None if etaps.output is None else chip.backend.to_numpy(etaps.output)

    def finish(self, round_index: int) -> StageResult:
        """This stage's gradient (mean over the batch) and timings; clears the round."""
        acc, w = self._acc, self._acc.pop("weight")
        grads = {name: g / w for name, g in self._grads.items()}
        self._acc, self._grads = {}, {}
        return StageResult(grads, acc["loss"], acc["n"], acc["correct"], acc["busy_s"])

    def infer(self, params: dict, version: int, subset: str, idx: np.ndarray, field, round_index: int, on: Target):
        """Inference: the output field (middle stages) or (predictions, labels) at the last stage."""
        if idx[0] == 0:
            self.fault.maybe_crash(self.stage, subset, round_index)
        chip = self.core.program(on, params, version)
        data = {"val": self.split.val, "test": self.split.test}[subset]
        ids = tuple(int(i) for i in data.ids[idx])
        x = self._input(data, idx, field)
        if not self.last:
            return chip.backend.to_numpy(chip.data_pass(x, PassKey(round_index, "inference", ids)).output)
        intensity = chip.infer(x, PassKey(round_index, "inference", ids))
        pred = chip.backend.to_numpy(detector_scores(intensity, chip.detectors)).argmax(axis=1)
        return pred, data.labels[idx]

    def ping(self) -> bool:
        return True

    def reveal(self) -> dict:
        return self.core.chip.reveal().as_arrays()


def make_stage_workers(
    chips: tuple[ChipSpec, ...],
    split_ref,
    objective,
    num_cpus: float,
    max_restarts: int,
    fault: FaultPlan = NO_FAULTS,
):
    """One StageWorker actor per chip, each with its share of the layers."""
    n_layers = chips[0].geometry.n_layers
    sizes = stage_layers(n_layers, len(chips))
    remote = ray.remote(StageWorker)
    return [
        remote.options(num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0).remote(
            dataclasses.replace(spec, geometry=dataclasses.replace(spec.geometry, n_layers=size)),
            k,
            len(chips),
            split_ref,
            objective,
            fault,
        )
        for k, (spec, size) in enumerate(zip(chips, sizes))
    ]


def split_params(params: dict, sizes: list[int]) -> list[dict]:
    """Cut a whole-network parameter set (L, n, n) into per-stage sets."""
    bounds = np.cumsum([0] + sizes)
    return [{k: v[a:b] for k, v in params.items()} for a, b in zip(bounds[:-1], bounds[1:])]


def pipeline_round(
    workers: list,
    stage_params: list[dict],
    versions: list[int],
    batch: np.ndarray,
    round_index: int,
    n_micro: int,
    on: Target,
    timeout_s: float | None = None,
) -> tuple[list[StageResult], float, float]:
    """One round over microbatches; returns each stage's result, the bubble fraction and the
    seconds spent broadcasting parameters."""
    t0 = time.perf_counter()
    refs = [ray.put(p) for p in stage_params]
    broadcast_s = time.perf_counter() - t0
    micro = [m for m in np.array_split(batch, min(n_micro, len(batch))) if len(m)]
    errors = []
    for mb, idx in enumerate(micro):  # all forwards first ...
        field = None
        for k, w in enumerate(workers):
            field = w.forward.remote(refs[k], versions[k], round_index, mb, idx, field, on)
        errors.append(field)
    for mb, idx in enumerate(micro):  # ... then the backward chains
        err = errors[mb]
        for w in reversed(workers[:-1]):
            err = w.backward.remote(round_index, mb, idx, err, on)
        errors[mb] = err
    ray.get(errors, timeout=timeout_s)
    results = ray.get([w.finish.remote(round_index) for w in workers], timeout=timeout_s)
    wall = time.perf_counter() - t0
    bubble = 1.0 - sum(r.busy_s for r in results) / (len(workers) * wall)
    return results, bubble, broadcast_s


def pipeline_evaluate(
    workers: list,
    stage_params: list[dict],
    versions: list[int],
    subset: str,
    n: int,
    batch_size: int,
    round_index: int,
    on: Target,
    timeout_s: float | None = None,
) -> EvalResult:
    """Accuracy and confusion through the whole chain."""
    refs = [ray.put(p) for p in stage_params]
    outs = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        field = None
        for k, w in enumerate(workers):
            field = w.infer.remote(refs[k], versions[k], subset, idx, field, round_index, on)
        outs.append(field)
    pairs = ray.get(outs, timeout=timeout_s)
    pred = np.concatenate([p for p, _ in pairs])
    labels = np.concatenate([y for _, y in pairs])
    c = int(max(labels.max(), pred.max())) + 1
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    return EvalResult(float((pred == labels).mean()), confusion)


def retry_whole(
    run: Callable[[], object], workers: list, policy: FailurePolicy, what: str, event: Callable[[str], None]
):
    """``run()`` (a whole pipeline round or evaluation), re-run on every stage after a fault.

    An actor unavailable or restarting is waited out (not counted); a death or a missed deadline counts
    one attempt (a missed deadline restarts every stage: which one hung is not known);
    a stage's own error fails at once with its text; past ``policy.retries``: ChipFailure.
    """
    attempts = 0
    while True:
        try:
            return run()
        except (RayActorError, RayTaskError, GetTimeoutError) as exc:
            if isinstance(exc, RayTaskError) and not isinstance(exc, RayActorError):
                raise ChipError(f"a pipeline stage failed in {what}: {actor_error_line(exc)}") from None
            if isinstance(exc, RayActorError) and exc.actor_init_failed:
                raise ChipError(f"a pipeline stage failed to start in {what}: {actor_error_line(exc)}") from None
            timed_out = isinstance(exc, GetTimeoutError)
            died = [k for k, w in enumerate(workers) if new_death(w)]  # asks every stage: no short-circuit
            reason = "no answer within the deadline" if timed_out else f"stage {died} died" if died else None
        if reason is not None:
            attempts += 1
            if attempts > policy.retries:
                raise ChipFailure(
                    f"the layer pipeline failed {attempts} times in {what} ({reason}); raise "
                    "cluster.round_retries / cluster.round_timeout_s or check the chips"
                )
            event(f"{what}: {reason}; re-running it on every stage (attempt {attempts + 1})")
            if timed_out:
                for w in workers:
                    ray.kill(w, no_restart=False)
            time.sleep(min(policy.backoff_s * attempts, policy.max_backoff_s))
        call_each(workers, list(range(len(workers))), "ping", policy, event)  # every stage is up again
