"""Calls to the chip actors: one round with a deadline and retries, and evaluations.

A chip whose actor dies or misses the deadline is retried with the *same* inputs (the
measurement noise is keyed by round and sample, so a re-run reproduces the lost result
exactly). Past ``retries`` the chip fails the run or is dropped, by policy.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from .coordinator import group_of


class ChipFailure(RuntimeError):
    """A chip stayed unavailable past the retry budget and the policy is 'fail'."""


@dataclass(frozen=True)
class FailurePolicy:
    timeout_s: float
    retries: int
    on_failure: str  # fail | drop
    backoff_s: float = 0.5


def fingerprint(params: dict) -> int:
    """A content hash of one parameter group: chips reprogram only when it changes."""
    crc = 0
    for name in sorted(params):
        crc = zlib.crc32(np.ascontiguousarray(params[name]).view(np.uint8), crc)
    return crc


def _broadcast(params: dict) -> dict:
    """``ray.put`` each parameter group once; returns group -> (ref, fingerprint)."""
    return {g: (ray.put(p), fingerprint(p)) for g, p in params.items()}


def call_round(workers: list, params: dict, shard_map: dict[int, np.ndarray], round_index: int,
               on: str, fidelity: bool, shared: bool, policy: FailurePolicy,
               event: Callable[[str], None]) -> tuple[dict[int, dict], list[int], float]:
    """Run one round on every chip in ``shard_map``; returns (results, chips still alive,
    seconds spent broadcasting the parameters)."""
    t0 = time.perf_counter()
    refs = _broadcast(params)  # once per parameter group
    broadcast_s = time.perf_counter() - t0

    def submit(k: int):
        ref, version = refs[group_of(k, shared)]
        return workers[k].run_round.remote(ref, version, shard_map[k], round_index, on, fidelity)

    pending = {k: submit(k) for k in shard_map}
    deadline = {k: time.monotonic() + policy.timeout_s for k in pending}
    attempts = {k: 0 for k in pending}
    results, alive = {}, sorted(shard_map)
    while pending:
        wait_s = max(0.0, min(deadline.values()) - time.monotonic())
        ready, _ = ray.wait(list(pending.values()), num_returns=1, timeout=wait_s)
        now = time.monotonic()
        for k in list(pending):
            ref = pending[k]
            if ref in ready:
                try:
                    results[k] = ray.get(ref)
                    del pending[k], deadline[k]
                    continue
                except (RayActorError, GetTimeoutError) as exc:
                    reason = f"{type(exc).__name__}"
            elif now >= deadline[k]:
                reason = f"no answer within {policy.timeout_s:g} s"
            else:
                continue
            attempts[k] += 1
            if attempts[k] > policy.retries:
                event(f"round {round_index}: chip {k} failed {attempts[k]} times ({reason}); policy "
                      f"{policy.on_failure}")
                if policy.on_failure == "fail":
                    raise ChipFailure(f"chip {k} unavailable after {policy.retries} retries in round "
                                      f"{round_index} ({reason}); set cluster.on_chip_failure=drop to continue "
                                      "without it")
                del pending[k], deadline[k]
                alive.remove(k)
                continue
            event(f"round {round_index}: chip {k} failed ({reason}); re-running the round on it "
                  f"(attempt {attempts[k] + 1})")
            time.sleep(policy.backoff_s * attempts[k])
            pending[k] = submit(k)
            deadline[k] = time.monotonic() + policy.timeout_s
    if not results:
        raise ChipFailure(f"no chip left in round {round_index}")
    return results, alive, broadcast_s


def evaluate_chips(workers: list, chips: list[int], params: dict, subset: str, round_index: int,
                   on: str, shared: bool, batch_size: int, n_examples: int = 0,
                   probabilities: bool = False) -> dict[int, dict]:
    """Accuracy (and confusion) of every listed chip, evaluated in parallel."""
    refs = _broadcast(params)
    calls = {k: workers[k].evaluate.remote(*refs[group_of(k, shared)], subset, round_index, on,
                                           batch_size, n_examples, probabilities) for k in chips}
    keys = list(calls)
    return dict(zip(keys, ray.get([calls[k] for k in keys])))
