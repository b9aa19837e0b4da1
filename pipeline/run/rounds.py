"""Every call to a chip actor goes through :func:`call_chips`: one fault path.

A call is a thunk that (re)submits one remote method call. What can happen to it:

- it returns: the result is kept;
- the actor is unavailable or restarting and has not died since we last looked (Ray's
  restart count in the GCS is unchanged): wait with capped backoff and submit again, up
  to the call's deadline; this is not a failure, it is not counted;
- the actor died (a crashed process, a lost node: its restart count went up, or it is
  dead for good) or the call missed its deadline (the actor is then killed so that Ray
  restarts it): one attempt counted;
  the call is submitted again with the *same* inputs (measurement noise is keyed by round,
  pass and sample, so a re-run reproduces the lost result bit for bit);
- the chip's hardware failed (the method raised :class:`~pipeline.run.actors.ChipFault`: a
  rig's frame never came after its own retries): one attempt counted, and the call is
  submitted again with the same inputs on the same actor, like a crashed chip's;
- the actor's constructor raised, or the method itself raised anything else (a
  ``RayTaskError``): a re-run with the same inputs would raise again, so the run fails at
  once with the actor's own error text (``ChipError``), never the generic "unavailable".

Past ``retries`` counted attempts the chip fails the run (``ChipFailure``) or, with
``on_failure='drop'``, leaves it. Training rounds, evaluation, final testing,
``describe``/``reveal``, both data topologies, the layer pipeline and the studies all use
this one path.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError

from pipeline.run.actors import ChipFault
from pipeline.run.coordinator import RoundResult, Step, Target, group_of


class ChipFailure(RuntimeError):
    """A chip stayed unavailable past the retry budget and the policy is 'fail'."""


class ChipError(RuntimeError):
    """A chip's constructor or method raised: the actor's own error, as one line."""


@dataclass(frozen=True)
class FailurePolicy:
    timeout_s: float
    retries: int
    on_failure: str  # fail | drop
    backoff_s: float = 0.5
    max_backoff_s: float = 5.0


def fingerprint(params: dict) -> int:
    """A content hash of one parameter group: chips reprogram only when it changes."""
    crc = 0
    for name in sorted(params):
        crc = zlib.crc32(np.ascontiguousarray(params[name]).view(np.uint8), crc)
    return crc


def _broadcast(params: dict) -> dict:
    """``ray.put`` each parameter group once; returns group -> (ref, fingerprint)."""
    return {g: (ray.put(p), fingerprint(p)) for g, p in params.items()}


def actor_error_line(exc: BaseException) -> str:
    """The last ``Type: message`` line of an actor's error (its own exception, not Ray's wrapper)."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, RayTaskError) and cause is not None and not isinstance(cause, RayTaskError):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.isidentifier() and (head.endswith(("Error", "Exception")) or head in ("KeyboardInterrupt",)):
            return line
    return lines[-1] if lines else type(exc).__name__


def _hardware_fault(exc: BaseException) -> bool:
    """The chip's hardware failed (:class:`ChipFault`): counted and re-run, not fatal."""
    return isinstance(exc, ChipFault) or isinstance(getattr(exc, "cause", None), ChipFault)


def _fatal(exc: BaseException) -> bool:
    """An error a re-run cannot fix: the actor's constructor or method raised."""
    if isinstance(exc, RayActorError):  # also a task that failed because an upstream actor died
        return exc.actor_init_failed
    return isinstance(exc, RayTaskError)


class _Call:
    """One chip's call: its current ref, deadline, counted attempts and restart backoff."""

    def __init__(self, submit: Callable[[], object], timeout_s: float):
        self.submit, self.timeout_s = submit, timeout_s
        self.attempts, self.waits = 0, 0
        self.restart()

    def restart(self) -> None:
        self.ref, self.deadline = self.submit(), time.monotonic() + self.timeout_s


_SEEN_RESTARTS: dict[str, int] = {}  # actor id -> restarts already counted against a call


def new_death(actor) -> bool:
    """Has ``actor`` died since we last looked? (its GCS restart count rose, or it is dead)."""
    try:
        from ray._private.state import actors

        actor_id = actor._actor_id.hex()
        info = actors(actor_id=actor_id)
    except Exception:  # noqa: BLE001  (no actor table: count every error, as if each were a death)
        return True
    restarts = int(info.get("NumRestarts", 0))
    died = restarts > _SEEN_RESTARTS.get(actor_id, 0) or info.get("State") == "DEAD"
    _SEEN_RESTARTS[actor_id] = restarts
    return died


def call_chips(
    calls: dict[int, Callable[[], object]],
    policy: FailurePolicy,
    what: str,
    event: Callable[[str], None],
    workers: list | None = None,
) -> tuple[dict[int, object], list[int]]:
    """Run ``calls`` (chip -> thunk submitting one remote call) through the fault path.

    Returns ``(results, dropped chips)``. ``what`` names the call in events and errors
    ("round 3", "validation at round 12"). ``workers[k]`` is chip ``k``'s actor: asked
    whether it really died, and restarted when it misses its deadline.
    """
    pending = {k: _Call(thunk, policy.timeout_s) for k, thunk in calls.items()}
    results, dropped = {}, []
    while pending:
        wait_s = max(0.0, min(c.deadline for c in pending.values()) - time.monotonic())
        ready, _ = ray.wait([c.ref for c in pending.values()], num_returns=1, timeout=wait_s)
        for k in list(pending):
            call = pending[k]
            reason = _settle(call, ready, results, k)
            if reason is None:
                if k in results:
                    del pending[k]
                continue
            if isinstance(reason, Exception):  # fatal: the actor's own error
                raise ChipError(f"chip {k} failed in {what}: {actor_error_line(reason)}") from None
            if reason.startswith("actor:") and workers is not None and not new_death(workers[k]):
                _wait_for_restart(call)  # unavailable or restarting after a death already counted
                continue
            if reason.startswith("no answer") and workers is not None:
                ray.kill(workers[k], no_restart=False)
            if _count(call, k, reason, what, policy, event):
                del pending[k]
                dropped.append(k)
    return results, dropped


def _settle(call: _Call, ready: list, results: dict, k: int):
    """None (done or still running), a reason (``actor: ...`` for an actor fault), or a fatal exception."""
    if call.ref in ready:
        try:
            results[k] = ray.get(call.ref)
            return None
        except (RayActorError, RayTaskError, GetTimeoutError) as exc:
            if _hardware_fault(exc):
                return f"chip fault: {actor_error_line(exc)}"
            if _fatal(exc):
                return exc
            if isinstance(exc, ActorUnavailableError):
                return "actor: unavailable (restarting)"
            return f"actor: {type(exc).__name__}" if isinstance(exc, RayActorError) else type(exc).__name__
    if time.monotonic() >= call.deadline:
        return f"no answer within {call.timeout_s:g} s"
    return None


def _wait_for_restart(call: _Call) -> None:
    """The actor is being restarted: back off (capped) and submit again; the deadline stands."""
    call.waits += 1
    time.sleep(min(0.1 * 2 ** min(call.waits, 6), 5.0, max(0.0, call.deadline - time.monotonic())))
    deadline = call.deadline
    call.restart()
    call.deadline = deadline


def _count(call: _Call, k: int, reason: str, what: str, policy: FailurePolicy, event) -> bool:
    """Count a real failure; re-submit, or apply the policy. True: the chip is dropped."""
    call.attempts += 1
    if call.attempts > policy.retries:
        event(f"{what}: chip {k} failed {call.attempts} times ({reason}); policy {policy.on_failure}")
        if policy.on_failure == "fail":
            raise ChipFailure(
                f"chip {k} unavailable after {policy.retries} retries in {what} ({reason}); "
                "set cluster.on_chip_failure=drop to continue without it, or raise "
                "cluster.round_retries / cluster.round_timeout_s"
            )
        return True
    event(f"{what}: chip {k} failed ({reason}); re-running it (attempt {call.attempts + 1})")
    time.sleep(min(policy.backoff_s * call.attempts, policy.max_backoff_s))
    call.waits = 0
    call.restart()
    return False


def call_round(
    workers: list,
    params: dict,
    shard_map: dict[int, np.ndarray],
    round_index: int,
    on: Target,
    fidelity: bool,
    shared: bool,
    policy: FailurePolicy,
    event: Callable[[str], None],
    step: Step = Step.FORWARD_ONLY,
) -> tuple[dict[int, RoundResult], list[int], float]:
    """Run one round's ``step`` on every chip in ``shard_map``; returns (results, chips still alive,
    seconds spent broadcasting the parameters)."""
    t0 = time.perf_counter()
    refs = _broadcast(params)  # once per parameter group
    broadcast_s = time.perf_counter() - t0

    def thunk(k: int):
        ref, version = refs[group_of(k, shared)]
        return lambda: workers[k].run_round.remote(ref, version, shard_map[k], round_index, on, fidelity, step)

    results, dropped = call_chips({k: thunk(k) for k in shard_map}, policy, f"round {round_index}", event, workers)
    if not results:
        raise ChipFailure(f"no chip left in round {round_index}")
    return results, [k for k in sorted(shard_map) if k not in dropped], broadcast_s


def evaluate_chips(
    workers: list,
    chips: list[int],
    params: dict,
    subset: str,
    round_index: int,
    on: Target,
    shared: bool,
    batch_size: int,
    policy: FailurePolicy,
    event: Callable[[str], None],
    n_examples: int = 0,
    probabilities: bool = False,
) -> tuple[dict[int, dict], list[int]]:
    """Accuracy (and confusion) of every listed chip, in parallel; returns (results, dropped)."""
    refs = _broadcast(params)

    def thunk(k: int):
        ref, version = refs[group_of(k, shared)]
        return lambda: workers[k].evaluate.remote(
            ref, version, subset, round_index, on, batch_size, n_examples, probabilities
        )

    results, dropped = call_chips(
        {k: thunk(k) for k in chips}, policy, f"{subset} evaluation at round {round_index}", event, workers
    )
    if not results:
        raise ChipFailure(f"no chip left for the {subset} evaluation at round {round_index}")
    return {k: results[k] for k in chips if k in results}, dropped


def call_each(workers: list, chips: list[int], method: str, policy: FailurePolicy, event, *args) -> dict:
    """``workers[k].<method>(*args)`` for every listed chip through the fault path (dropping nothing:
    a chip that stays dead here fails the call, whatever the policy)."""
    strict = FailurePolicy(policy.timeout_s, policy.retries, "fail", policy.backoff_s, policy.max_backoff_s)
    calls = {k: (lambda k=k: getattr(workers[k], method).remote(*args)) for k in chips}
    return call_chips(calls, strict, method, event, workers)[0]


def stop_actors(workers: list) -> None:
    """Kill every chip actor of a run (its end, however it ends); Ray does not restart them."""
    for w in workers:
        ray.kill(w)
