"""The coordinator: an explicit train state, a pure step, and the round loop.

One round, as it reads below::

    params_ref = ray.put(phases)                               # broadcast once
    refs = {k: chip.run_round.remote(params_ref, shard_k, r)}  # one coarse call per chip
    results = collect(refs, deadline)                          # failures retried, same inputs
    state = step(state, results)                               # pure: aggregate + optimizer
    tracker.log_round(...)                                     # only the coordinator logs

Gradients: chip ``k`` returns the gradient of the mean loss over its shard of ``n_k``
samples; the aggregate ``sum_k n_k g_k / sum_k n_k`` is the gradient of the mean loss
over the whole batch, exactly what one process would compute (data parallelism is exact
because the FFM gradient is a per-sample sum).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import NewType

import numpy as np

from optics.core import optim

GroupId = NewType("GroupId", str)  # a parameter group: SHARED, chip{k} or stage{k}
SHARED = GroupId("shared")
COUNTERS = "rig/"  # round metrics: a rig's counters summed over chips (rig/frames, rig/slm_writes, ...)
CALIBRATIONS = "calibration/"  # metrics of each calibration: calibration/chip{k}/<name>/<value>


class Target(enum.StrEnum):
    """Where a pass runs: the chip itself or its digital twin (equal to the strings 'chip', 'twin')."""

    CHIP = "chip"
    TWIN = "twin"


class Step(enum.Enum):
    """What a training round computes on a worker (:meth:`pipeline.run.actors.ChipWorker.run_round`)."""

    FORWARD_ONLY = "forward_only"  # data and error pass on the target: FFM on the chip, backprop on the twin
    PHYSICS_AWARE = "physics_aware"  # PAT: data pass and loss on the chip, error pass through the twin


def chip_group(chip: int) -> GroupId:
    """Chip ``chip``'s own parameter group (also the name its results are reported under)."""
    return GroupId(f"chip{chip}")


def stage_group(stage: int) -> GroupId:
    """Layer-pipeline stage ``stage``'s parameter group."""
    return GroupId(f"stage{stage}")


@dataclass(frozen=True)
class RoundResult:
    """One chip's training round (:meth:`pipeline.run.actors.ChipWorker.run_round`), NumPy only.

    ``grads``: parameter name -> gradient of the mean loss over the shard; the coordinator
    weights chips by ``n``. ``loss`` is the shard's mean loss."""

    grads: dict[str, np.ndarray]
    loss: float
    n: int
    correct: int
    compute_s: float
    fidelity_cosine: float | None = None  # gradient fidelity against the true gradient, when asked
    counters: dict[str, float] | None = None  # a rig: frames, SLM writes, rig seconds, ... since its last report
    calibrations: tuple = ()  # a rig: calibrations since its last report, {"name", "values", "frames"} each


@dataclass(frozen=True)
class EvalResult:
    """One evaluation (validation or test) of a chip, a combination of chips or a layer pipeline.

    ``accuracy`` in [0, 1]; ``confusion`` (C, C) counts, rows true class, columns predicted;
    ``detected_fraction``: the mean fraction of each input's power on the detectors (unit
    input power); ``examples`` (K, ...) detected intensities of the first samples, when asked;
    ``probabilities`` (N, C) per-sample softmax of the detector scores with their ``labels``
    (N,), when asked (chips combined electronically); ``subtask_accuracy``: group -> accuracy
    of each chip's sub-task (the width topology's combined result)."""

    accuracy: float
    confusion: np.ndarray
    detected_fraction: float | None = None
    examples: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    labels: np.ndarray | None = None
    subtask_accuracy: dict | None = None
    counters: dict[str, float] | None = None  # a rig: frames, SLM writes, rig seconds, ... of this evaluation


@dataclass(frozen=True)
class StageResult:
    """One layer-pipeline stage's round (:meth:`pipeline.run.layer_pipeline.StageWorker.finish`).

    ``grads``: this stage's gradient, mean over the batch; ``loss`` (summed over the batch),
    ``n`` and ``correct`` are the last stage's (zero elsewhere); ``busy_s`` its working seconds."""

    grads: dict[str, np.ndarray]
    loss: float
    n: int
    correct: int
    busy_s: float


@dataclass
class TrainState:
    """Everything needed to continue training exactly (checkpointed as .npz)."""

    params: dict  # group -> {"phase": (L, n, n), ["amplitude": ...]}
    opt: dict  # group -> optimizer state
    round: int = 0  # rounds done
    epoch: int = 0
    position: int = 0  # batches done in this epoch
    alive: list = field(default_factory=list)  # chip indices still in the run
    best_val: float = -1.0
    best_params: dict = field(default_factory=dict)


def group_of(chip: int, shared: bool) -> GroupId:
    return SHARED if shared else chip_group(chip)


def init_state(
    groups: dict[GroupId, tuple],
    spec: optim.OptimizerSpec,
    train_amplitude: bool,
    chips: list[int],
    init: str = "pi",
    seed: int = 0,
) -> TrainState:
    """``groups`` maps each parameter group to its phase shape. Phases ``init='pi'``: all at pi
    (a diffractive chip: mid-range, away from the SLM phase wrap); ``'uniform'``: uniform in
    [0, 2 pi) from ``seed`` (an MZI mesh: away from the bar/cross states, where gradients
    vanish). Amplitudes at 1."""
    params = {}
    rng = np.random.default_rng([int(seed), 0x1A17])
    for g, shape in groups.items():
        phase = rng.uniform(0.0, 2 * np.pi, shape) if init == "uniform" else np.full(shape, np.pi)
        params[g] = {"phase": phase}
        if train_amplitude:
            params[g]["amplitude"] = np.ones(shape)
    opt = {g: optim.init_state(spec, p) for g, p in params.items()}
    return TrainState(
        params, opt, alive=list(chips), best_params={g: {k: v.copy() for k, v in p.items()} for g, p in params.items()}
    )


def aggregate(results: dict[int, RoundResult], shared: bool) -> dict[GroupId, dict[str, np.ndarray]]:
    """Per-group gradients: shard-size-weighted mean over chips sharing the group."""
    sums: dict[GroupId, dict[str, np.ndarray]] = {}
    counts: dict[GroupId, int] = {}
    for chip in sorted(results):
        res, g = results[chip], group_of(chip, shared)
        n = int(res.n)
        counts[g] = counts.get(g, 0) + n
        for name, value in res.grads.items():
            acc = sums.setdefault(g, {})
            acc[name] = acc.get(name, 0.0) + n * np.asarray(value, dtype=np.float64)
    return {g: {k: v / counts[g] for k, v in grads.items()} for g, grads in sums.items()}


def step(
    state: TrainState, grads: dict[str, dict[str, np.ndarray]], spec: optim.OptimizerSpec, batches_per_epoch: int
) -> TrainState:
    """Pure: update every group's parameters with its gradient, advance the counters."""
    params, opt = dict(state.params), dict(state.opt)
    for g, gr in grads.items():
        params[g], opt[g] = optim.step(spec, state.params[g], gr, state.opt[g])
    new = dataclasses.replace(state, params=params, opt=opt, round=state.round + 1, position=state.position + 1)
    if new.position > batches_per_epoch:
        raise RuntimeError(f"round {state.round}: epoch {state.epoch} has only {batches_per_epoch} batches")
    return new


def end_epoch(state: TrainState, val_accuracy: float) -> TrainState:
    """Pure: keep the best parameters by validation accuracy, move to the next epoch."""
    best_val, best = state.best_val, state.best_params
    if val_accuracy > state.best_val:
        best_val = val_accuracy
        best = {g: {k: v.copy() for k, v in p.items()} for g, p in state.params.items()}
    return dataclasses.replace(state, epoch=state.epoch + 1, position=0, best_val=best_val, best_params=best)


def batch_indices(seed: int, epoch: int, position: int, n_train: int, batch_size: int) -> np.ndarray:
    """Training indices of batch ``position`` of ``epoch``: a keyed permutation, no hidden RNG state."""
    order = np.random.default_rng([seed, epoch]).permutation(n_train)
    return order[position * batch_size : (position + 1) * batch_size]


def shards(batch: np.ndarray, chips: list[int]) -> dict[int, np.ndarray]:
    """Split a batch across the live chips (sizes differ by at most one)."""
    return dict(zip(chips, np.array_split(batch, len(chips))))


def grad_norm(grads: dict[GroupId, dict[str, np.ndarray]]) -> float:
    """The L2 norm of every group's every gradient together."""
    return float(np.sqrt(sum(float(np.sum(v * v)) for g in grads.values() for v in g.values())))


def round_metrics(
    results: dict[int, RoundResult], grads: dict, round_s: float, broadcast_s: float = 0.0
) -> dict[str, float]:
    """Per-round metrics from the chips' results (weighted by shard size), with the time
    breakdown: broadcast (``ray.put``), slowest chip's compute, collect (the rest of the wait)."""
    n = sum(int(r.n) for r in results.values())
    slowest = max(float(r.compute_s) for r in results.values())
    out = {
        "loss": sum(r.loss * r.n for r in results.values()) / n,
        "accuracy": sum(int(r.correct) for r in results.values()) / n,
        "grad_norm": grad_norm(grads),
        "round_s": round_s,
        "slowest_chip_s": slowest,
        "samples_per_s": n / round_s if round_s > 0 else 0.0,
        "broadcast_s": broadcast_s,
        "collect_s": max(round_s - broadcast_s - slowest, 0.0),
    }
    fids = [r.fidelity_cosine for r in results.values() if r.fidelity_cosine is not None]
    if fids:
        out["grad_fidelity_cosine"] = float(np.mean(fids))
    out |= summed_counters(r.counters for r in results.values())
    for chip in sorted(results):
        out |= calibration_metrics(chip, results[chip].calibrations)
    return out


def summed_counters(counted) -> dict[str, float]:
    """Rig counters of several chips: each counter summed (``rig/<name>``), and the slowest
    rig's seconds (``rig/rig_seconds_max``, what the chips' rig time costs the round)."""
    counted = [c for c in counted if c]
    if not counted:
        return {}
    out = {f"{COUNTERS}{k}": float(sum(c.get(k, 0.0) for c in counted)) for k in counted[0]}
    if "rig_seconds" in counted[0]:
        out[f"{COUNTERS}rig_seconds_max"] = float(max(c.get("rig_seconds", 0.0) for c in counted))
    return out


def calibration_metrics(chip: int, calibrations) -> dict[str, float]:
    """``calibration/chip{k}/<name>/<value>`` and ``.../frames`` of each calibration; a name that
    comes again in the same report gets ``_2``, ``_3``, ... (the drift is probed before the data
    and before the error pass)."""
    out: dict[str, float] = {}
    seen: dict[str, int] = {}
    for c in calibrations:
        seen[c["name"]] = seen.get(c["name"], 0) + 1
        name = c["name"] if seen[c["name"]] == 1 else f"{c['name']}_{seen[c['name']]}"
        prefix = f"{CALIBRATIONS}{chip_group(chip)}/{name}"
        out |= {f"{prefix}/{k}": float(v) for k, v in c["values"].items()}
        out[f"{prefix}/frames"] = float(c["frames"])
    return out
