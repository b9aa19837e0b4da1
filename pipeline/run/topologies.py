"""How chips share the work of a round: data parallel (shards) or a layer pipeline.

Both offer the same coarse interface to the driver: the parameter groups they train,
``run_round`` (one round: gradients per group and metrics), ``evaluate``, ``locate`` and
``reveal``. The driver and the coordinator's pure step do not know which one runs.
``evaluate`` returns the results and the chips still alive (a chip that stays dead during
an evaluation is dropped there too, by policy). Every call goes through
:func:`pipeline.run.rounds.call_chips`.
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.config import TopologyKind
from pipeline.run.coordinator import (
    EvalResult,
    Target,
    aggregate,
    chip_group,
    grad_norm,
    round_metrics,
    shards,
    stage_group,
)
from pipeline.run.layer_pipeline import make_stage_workers, pipeline_evaluate, pipeline_round, retry_whole, stage_layers
from pipeline.run.rounds import call_each, call_round, evaluate_chips, fingerprint, stop_actors
from pipeline.run.trainers import TRAIN_STEP


class DataParallel:
    """K chips, a shard of every batch each; gradients averaged by shard size."""

    kind = TopologyKind.DATA_PARALLEL

    def __init__(self, plan, workers: list, event):
        self.plan, self.workers, self.event = plan, workers, event

    def run_round(self, params: dict, alive: list[int], batch: np.ndarray, round_index: int, fidelity: bool):
        t0 = time.perf_counter()
        results, alive, put_s = call_round(
            self.workers,
            params,
            shards(batch, alive),
            round_index,
            self.plan.train_on,
            fidelity,
            self.plan.shared,
            self.plan.policy,
            self.event,
            TRAIN_STEP[self.plan.trainer],
        )
        grads = aggregate(results, self.plan.shared)
        return grads, round_metrics(results, grads, time.perf_counter() - t0, put_s), alive

    def evaluate(
        self,
        params: dict,
        alive: list[int],
        subset: str,
        round_index: int,
        on: Target,
        batch_size: int,
        n_examples: int = 0,
    ) -> tuple[dict[str, EvalResult], list[int]]:
        chips = alive if on == Target.CHIP else alive[:1]
        res, dropped = evaluate_chips(
            self.workers,
            chips,
            params,
            subset,
            round_index,
            on,
            self.plan.shared,
            batch_size,
            self.plan.policy,
            self.event,
            n_examples,
        )
        return {chip_group(k): r for k, r in res.items()}, [k for k in alive if k not in dropped]

    def _each(self, alive: list[int], method: str) -> dict:
        return call_each(self.workers, alive, method, self.plan.policy, self.event)

    def locate(self, alive: list[int]) -> dict[str, dict]:
        where = self._each(alive, "describe")
        return {
            chip_group(k): {
                "seed": self.plan.chips[k].seed,
                "node_id": where[k]["node_id"],
                "resources": where[k]["assigned_resources"],
            }
            for k in alive
        }

    def reveal(self, alive: list[int]) -> dict[str, dict]:
        return {chip_group(k): r for k, r in self._each(alive, "reveal").items()}

    def detector_regions(self, alive: list[int]):
        return self._each(alive[:1], "detector_regions")[alive[0]]

    def hardware_reports(self, alive: list[int], batch: int) -> dict[int, dict]:
        """Chip -> its hardware report at start (instrumented chips only: a rig's timing, calibrations)."""
        found = call_each(self.workers, alive, "hardware_report", self.plan.policy, self.event, batch)
        return {k: r for k, r in found.items() if r is not None}


class Width(DataParallel):
    """Taichi-style chiplets: chip k learns a sub-task (its group of classes plus "other")
    on every sample, with its own masks; the chips' detector outputs are combined
    electronically: class c scores ``p_k(c)``, chip k's softmax probability for it."""

    kind = TopologyKind.WIDTH

    def run_round(self, params: dict, alive: list[int], batch: np.ndarray, round_index: int, fidelity: bool):
        t0 = time.perf_counter()
        results, alive, put_s = call_round(
            self.workers,
            params,
            {k: batch for k in alive},
            round_index,
            self.plan.train_on,
            fidelity,
            False,
            self.plan.policy,
            self.event,
            TRAIN_STEP[self.plan.trainer],
        )
        grads = aggregate(results, False)
        return grads, round_metrics(results, grads, time.perf_counter() - t0, put_s), alive

    def evaluate(
        self,
        params: dict,
        alive: list[int],
        subset: str,
        round_index: int,
        on: Target,
        batch_size: int,
        n_examples: int = 0,
    ) -> tuple[dict[str, EvalResult], list[int]]:
        res, dropped = evaluate_chips(
            self.workers,
            alive,
            params,
            subset,
            round_index,
            on,
            False,
            batch_size,
            self.plan.policy,
            self.event,
            probabilities=True,
        )
        labels = next(iter(res.values())).labels
        n_classes = sum(len(self.plan.chips[k].classes) for k in range(len(self.plan.chips)))
        scores = np.full((len(labels), n_classes), -np.inf)
        for k, r in res.items():
            classes = list(self.plan.chips[k].classes)
            scores[:, classes] = r.probabilities[:, : len(classes)]
        pred = scores.argmax(axis=1)
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(confusion, (labels, pred), 1)
        combined = EvalResult(
            float((pred == labels).mean()),
            confusion,
            subtask_accuracy={chip_group(k): r.accuracy for k, r in res.items()},
        )
        return {"combined": combined}, [k for k in alive if k not in dropped]

    def locate(self, alive: list[int]) -> dict[str, dict]:
        return {
            "combined": {
                chip_group(k): {**w, "classes": list(self.plan.chips[k].classes)}
                for k, w in zip(alive, super().locate(alive).values())
            }
        }

    def detector_regions(self, alive: list[int]):
        return None


class LayerPipeline:
    """A deep network split by layers across the chips (see :mod:`pipeline.run.layer_pipeline`)."""

    kind = TopologyKind.PIPELINE

    def __init__(self, plan, workers: list, n_micro: int, n_val: int, n_test: int, event):
        self.plan, self.workers, self.n_micro, self.event = plan, workers, n_micro, event
        self.sizes = stage_layers(plan.geometry.n_layers, len(plan.chips))
        self.n_eval = {"val": n_val, "test": n_test}

    def _stage_params(self, params: dict) -> tuple[list[dict], list[int]]:
        stage = [params[stage_group(k)] for k in range(len(self.sizes))]
        return stage, [fingerprint(p) for p in stage]

    def run_round(self, params: dict, alive: list[int], batch: np.ndarray, round_index: int, fidelity: bool):
        stage, versions = self._stage_params(params)
        t0 = time.perf_counter()
        timeout = self.plan.policy.timeout_s
        results, bubble, put_s = retry_whole(
            lambda: pipeline_round(
                self.workers, stage, versions, batch, round_index, self.n_micro, self.plan.train_on, timeout
            ),
            self.workers,
            self.plan.policy,
            f"round {round_index}",
            self.event,
        )
        wall = time.perf_counter() - t0
        grads = {stage_group(k): dict(r.grads) for k, r in enumerate(results)}
        last = results[-1]
        metrics = {
            "loss": last.loss / last.n,
            "accuracy": last.correct / last.n,
            "grad_norm": grad_norm(grads),
            "round_s": wall,
            "slowest_chip_s": max(r.busy_s for r in results),
            "bubble_frac": bubble,
            "samples_per_s": last.n / wall,
            "broadcast_s": put_s,
            "collect_s": max(wall - put_s - max(r.busy_s for r in results), 0.0),
        }
        return grads, metrics, alive

    def evaluate(
        self,
        params: dict,
        alive: list[int],
        subset: str,
        round_index: int,
        on: Target,
        batch_size: int,
        n_examples: int = 0,
    ) -> tuple[dict[str, EvalResult], list[int]]:
        stage, versions = self._stage_params(params)
        res = retry_whole(
            lambda: pipeline_evaluate(
                self.workers,
                stage,
                versions,
                subset,
                self.n_eval[subset],
                batch_size,
                round_index,
                on,
                self.plan.policy.timeout_s,
            ),
            self.workers,
            self.plan.policy,
            f"{subset} evaluation at round {round_index}",
            self.event,
        )
        return {"pipeline": res}, alive

    def locate(self, alive: list[int]) -> dict[str, dict]:
        return {"pipeline": {"seeds": [c.seed for c in self.plan.chips], "layers_per_chip": self.sizes}}

    def reveal(self, alive: list[int]) -> dict[str, dict]:
        every = list(range(len(self.workers)))
        found = call_each(self.workers, every, "reveal", self.plan.policy, self.event)
        return {stage_group(k): found[k] for k in every}

    def detector_regions(self, alive: list[int]):
        return None

    def hardware_reports(self, alive: list[int], batch: int) -> dict[int, dict]:
        return {}  # stages are simulated chips


def make_topology(plan, cfg, split, split_ref, event, make_workers):
    """Build the actors of the configured topology and ping each (the composition root calls this):
    a chip whose constructor raised fails here with its own error, as one line."""

    if plan.topology == TopologyKind.PIPELINE:
        workers = make_stage_workers(
            plan.chips, split_ref, plan.objective, cfg.chip.num_cpus, cfg.cluster.max_restarts, plan.fault
        )
        topo = LayerPipeline(plan, workers, cfg.topology.microbatches, len(split.val), len(split.test), event)
    else:
        cls = Width if plan.topology == TopologyKind.WIDTH else DataParallel
        topo = cls(plan, make_workers(plan, cfg, split_ref), event)
    try:
        call_each(topo.workers, list(range(len(topo.workers))), "ping", plan.policy, event)
    except BaseException:
        stop_actors(topo.workers)  # a chip that cannot start: none of them stays (nor holds its rig)
        raise
    return topo
