"""ChipWorker: a plain class holding one chip (and its digital twin); NumPy in and out.

:mod:`pipeline.run.build` turns it into a Ray actor with the chip's resources. One coarse
call per chip per round (:meth:`ChipWorker.run_round`): program the phases if they
changed, run the round's step over this chip's shard (FFM's data and error passes, or PAT's
data pass with the twin's error pass), return the gradient and metrics. The chip is built
inside the worker from typed specs, never in the driver, and the dataset arrives through
Ray's object store, so a chip host needs no local files.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from optics.core import ffm, pat
from optics.core.backend import get_backend
from optics.core.chip import NoiseFreeOracle
from optics.core.data import Split
from optics.core.detectors import detector_scores
from optics.core.measurement import PassKey
from pipeline.chips import ChipSpec, ChipSystem, system_of
from pipeline.chips.base import faults_of
from pipeline.run.coordinator import EvalResult, RoundResult, Step, Target
from pipeline.run.dataset import resolve_split


class ChipFault(RuntimeError):
    """The chip's hardware failed during a call (a frame that never came, after its own retries):
    the fault path re-runs the call with the same inputs, like a crashed chip's, then applies the
    failure policy. Raised by a worker from the errors its chip system names (``faults``)."""


@runtime_checkable
class Instrumented(Protocol):
    """A chip that counts what it does and calibrates itself (a rig): what the worker reports."""

    def counters(self) -> dict: ...
    def drain_calibrations(self) -> list: ...
    def seconds_per_sample(self, batch: int = 32) -> dict: ...


@dataclass(frozen=True)
class FaultPlan:
    """Fault injection for tests: chip ``k``'s process exits (a hard crash, as a lost host
    would look) when it starts call ``call`` of round ``r``, once per point ``(k, call, r)``.

    Calls: ``round`` (a training round; a pipeline stage's first microbatch), ``val`` and
    ``test`` (an evaluation; the final test runs at the last round + 1). A marker file per
    point in ``marker_dir`` remembers across restarts that it already fired.
    """

    points: tuple[tuple[int, str, int], ...] = ()
    marker_dir: str | None = None

    def maybe_crash(self, chip: int, call: str, round_index: int) -> None:
        if (chip, call, round_index) not in self.points or self.marker_dir is None:
            return
        os.makedirs(self.marker_dir, exist_ok=True)
        try:
            os.close(
                os.open(
                    os.path.join(self.marker_dir, f"{chip}-{call}-{round_index}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY
                )
            )
        except FileExistsError:
            return
        os._exit(1)


NO_FAULTS = FaultPlan()


class WorkerCore:
    """What every chip worker (:class:`ChipWorker`, a layer-pipeline stage) holds: the chip and its
    twin built by the chip system's adapter on this process's backend, programmed only when the
    parameter version changed, and the adapter's input encoding."""

    def __init__(self, spec: ChipSpec, relay_input: bool = False):
        self.spec = spec
        self.system: ChipSystem = system_of(spec)

        def backend():
            return get_backend(spec.backend, spec.precision, spec.fft_threads, spec.fft_planner)

        chip, twin = self.system.make_chips(spec, backend, relay_input)
        self.targets = {Target.CHIP: chip, Target.TWIN: twin}
        self._programmed: dict[Target, int | None] = {Target.CHIP: None, Target.TWIN: None}

    @property
    def chip(self):
        return self.targets[Target.CHIP]

    @property
    def twin(self):
        return self.targets[Target.TWIN]

    def target(self, on: str):
        try:
            return self.targets[Target(on)]
        except ValueError:
            raise ValueError(f"on must be 'chip' or 'twin', got {on!r}") from None

    def program(self, on: str, params: dict, version: int):
        """The target ``on``, programmed with ``params`` unless it already holds ``version``
        (SLM writes only when the phases changed)."""
        target = self.target(on)
        if self._programmed[Target(on)] != version:
            target.program(params["phase"], params.get("amplitude"))
            self._programmed[Target(on)] = version
        return target

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.system.encode(self.spec.geometry, images)


class ChipWorker:
    """One chip: builds it from ``spec``, runs whole rounds, returns NumPy results."""

    def __init__(self, spec: ChipSpec, split: Split, objective: ffm.Objective, fault: FaultPlan = NO_FAULTS):
        self.spec = spec
        self.split = resolve_split(split)  # the split, or its holder's source (a Ray actor)
        self.objective = objective
        self.fault = fault
        self.core = WorkerCore(spec)
        self.chip, self.twin = self.core.chip, self.core.twin
        self.registration_estimate = None
        if spec.calibrate_registration:  # a calibration step before any training
            self.registration_estimate = self.core.system.calibrate(self.chip, self.twin)
        self.fault_types = faults_of(self.core.system)  # its hardware faults (a rig's RigFault)
        self._reported: dict = {}  # the chip's counters at its last report
        self._steps = {Step.FORWARD_ONLY: self._forward_only, Step.PHYSICS_AWARE: self._physics_aware}

    @contextlib.contextmanager
    def _hardware_faults(self):
        """The chip system's hardware faults as :class:`ChipFault` (one line), for the fault path."""
        try:
            yield
        except self.fault_types as exc:
            line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            raise ChipFault(f"{type(exc).__name__}: {line}") from None

    def _counters(self) -> dict | None:
        """What an instrumented chip counted since its last report (None: a simulated chip)."""
        if not isinstance(self.chip, Instrumented):
            return None
        now = self.chip.counters()
        since = {k: float(v) - float(self._reported.get(k, 0.0)) for k, v in now.items()}
        self._reported = dict(now)
        return since

    def _calibrations(self) -> tuple:
        """Calibrations an instrumented chip made since its last report, as plain values."""
        if not isinstance(self.chip, Instrumented):
            return ()
        return tuple(
            {"name": str(c.name), "values": {k: float(v) for k, v in c.values.items()}, "frames": int(c.frames)}
            for c in self.chip.drain_calibrations()
        )

    def hardware_report(self, batch: int) -> dict | None:
        """An instrumented chip at start: rig seconds per sample (its timing model, for ``batch``
        samples per round), the start-up calibrations and counters. None for a simulated chip."""
        if not isinstance(self.chip, Instrumented):
            return None
        with self._hardware_faults():
            seconds = {k: float(v) for k, v in self.chip.seconds_per_sample(batch).items()}
        return {"seconds_per_sample": seconds, "calibrations": self._calibrations(), "counters": self._counters()}

    def _inputs(self, subset, idx: np.ndarray):
        return self.core.encode(subset.images[idx]), self._labels(subset.labels[idx]), subset.ids[idx]

    def _labels(self, labels: np.ndarray) -> np.ndarray:
        """Global labels, or this chip's sub-task labels: index within its classes, else 'other'."""
        classes = self.spec.classes
        if classes is None:
            return labels
        local = np.full(labels.shape, len(classes), dtype=np.int64)
        for i, c in enumerate(classes):
            local[labels == c] = i
        return local

    def run_round(
        self,
        params: dict,
        version: int,
        shard: np.ndarray,
        round_index: int,
        on: Target,
        fidelity: bool = False,
        step: Step = Step.FORWARD_ONLY,
    ) -> RoundResult:
        """One training ``step`` over ``shard`` (indices into the training set) with the data pass on ``on``:
        forward only (data and error pass on ``on``) or physics aware (data pass on ``on``, error pass
        through the twin: :mod:`optics.core.pat`).

        Returns NumPy: the gradients (sum over the shard of per-sample gradients of the mean
        loss, scaled to the shard: the coordinator weights by shard size), loss, sample and
        correct counts, compute seconds and, if asked and on the chip, the gradient fidelity.
        """
        t0 = time.perf_counter()
        self.fault.maybe_crash(self.spec.index, "round", round_index)
        target = self.core.program(on, params, version)
        x, y, ids = self._inputs(self.split.train, np.asarray(shard))
        with self._hardware_faults():
            res = self._steps[step](target, params, version, x, y, ids, round_index)
        grads = {"phase": res.grad_phase}
        if res.grad_amplitude is not None:
            grads["amplitude"] = res.grad_amplitude
        fidelity_cosine = None
        if fidelity and on == Target.CHIP and isinstance(self.chip, NoiseFreeOracle):  # a simulator's oracle only
            truth = ffm.true_gradient(self.chip, x, y, self.objective)
            fidelity_cosine = ffm.gradient_fidelity(res.grad_phase, truth.grad_phase)["cosine"]
        return RoundResult(
            grads,
            res.loss,
            res.n_samples,
            res.n_correct,
            time.perf_counter() - t0,
            fidelity_cosine=fidelity_cosine,
            counters=self._counters(),
            calibrations=self._calibrations(),
        )

    def _forward_only(self, target, params, version, x, y, ids, round_index) -> ffm.StepResult:
        return ffm.forward_only_step(target, x, y, self.objective, round_index, ids, self.spec.samples_per_pass)

    def _physics_aware(self, target, params, version, x, y, ids, round_index) -> ffm.StepResult:
        """PAT: ``target`` measures; the twin, programmed with the same phases, gives the Jacobian."""
        twin = self.core.program(Target.TWIN, params, version)
        return pat.physics_aware_step(target, twin, x, y, self.objective, round_index, ids, self.spec.samples_per_pass)

    def evaluate(
        self,
        params: dict,
        version: int,
        subset: str,
        round_index: int,
        on: Target,
        batch_size: int,
        n_examples: int = 0,
        probabilities: bool = False,
    ) -> EvalResult:
        """Accuracy and confusion matrix on ``subset`` ('val' or 'test'); optional detector images
        and per-sample softmax probabilities of the detector scores (for combining chips)."""
        self.fault.maybe_crash(self.spec.index, subset, round_index)
        target = self.core.program(on, params, version)
        data = {"val": self.split.val, "test": self.split.test}[subset]
        c = self.spec.geometry.n_classes
        confusion = np.zeros((c, c), dtype=np.int64)
        examples, probs, detected = [], [], 0.0
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            x, y, ids = self._inputs(data, idx)
            with self._hardware_faults():
                intensity = target.infer(x, PassKey(round_index, "inference", tuple(int(i) for i in ids)))
            scores = target.backend.to_numpy(detector_scores(intensity, target.detectors)).astype(np.float64)
            pred = scores.argmax(axis=1)
            detected += float(scores.sum())  # inputs carry unit power: the detected fraction
            np.add.at(confusion, (y, pred), 1)
            if probabilities:
                z = scores / self.objective.temperature
                z = np.exp(z - z.max(axis=1, keepdims=True))
                probs.append(z / z.sum(axis=1, keepdims=True))
            if len(examples) < n_examples:
                examples.extend(target.backend.to_numpy(intensity[: n_examples - len(examples)]))
        return EvalResult(
            float(np.trace(confusion) / max(confusion.sum(), 1)),
            confusion,
            detected / max(len(data), 1),
            np.asarray(examples, dtype=np.float32) if n_examples else None,
            np.concatenate(probs) if probabilities else None,
            data.labels if probabilities else None,
            counters=self._counters(),
        )

    def ping(self) -> bool:
        """Answers once the constructor has finished (the driver pings every chip after creating it)."""
        return True

    def describe(self) -> dict:
        """The chip's public description, plus where it runs (Ray node and assigned resources)."""
        where = {"pid": os.getpid(), "host": os.uname().nodename}
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            where |= {"node_id": ctx.get_node_id(), "assigned_resources": ctx.get_assigned_resources()}
        return {"index": self.spec.index, **where, **self.chip.describe()}

    def reveal(self) -> dict:
        """The chip's hidden imperfections as arrays (logged at the end, for analysis only); a
        physical chip hides them for real (none)."""
        hidden = getattr(self.chip, "reveal", None)
        out = hidden().as_arrays() if hidden is not None else {}
        if self.registration_estimate is not None:
            out["registration_estimate_px"] = self.registration_estimate
        return out

    def detector_regions(self) -> np.ndarray | None:
        """(n, n) class-region image of a camera; None for a mesh (its detectors are modes)."""
        return self.core.system.detector_regions(self.chip)
