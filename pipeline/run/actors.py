"""ChipWorker: a plain class holding one chip (and its digital twin); NumPy in and out.

:mod:`pipeline.run.build` turns it into a Ray actor with the chip's resources. One coarse
call per chip per round (:meth:`ChipWorker.run_round`): program the phases if they
changed, run the data and error passes over this chip's shard, return the gradient and
metrics. The chip is built inside the worker from typed specs, never in the driver, and
the dataset arrives through Ray's object store, so a chip host needs no local files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from optics.core import ffm
from optics.core.backend import get_backend
from optics.core.data import Split, encode_amplitude, encode_modes
from optics.core.detectors import detector_scores
from optics.core.measurement import MeasurementSpec, PassKey
from optics.diffractive.calibration import calibrate_registration
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec
from optics.mesh.layout import MeshErrors, MeshGeometry
from optics.mesh.mzi import MeshTwin, SimulatedMesh


@dataclass(frozen=True)
class ChipSpec:
    """Everything a worker needs to build its chip (typed; no config objects)."""

    index: int
    seed: int
    geometry: Geometry | MeshGeometry
    hardware: HardwareSpec | MeshErrors
    measurement: MeasurementSpec
    backend: str = "numpy"
    precision: str = "complex64"
    fft_threads: int | None = None
    fft_planner: str = "measure"
    classes: tuple | None = None  # width topology: this chip's sub-task (these classes + "other")
    calibrate_registration: bool = False  # measure and correct the chip's registration at start
    samples_per_pass: int | None = None  # memory-lean: at most this many samples per pass (None: the shard)


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


class ChipWorker:
    """One chip: builds it from ``spec``, runs whole rounds, returns NumPy results."""

    def __init__(self, spec: ChipSpec, split: Split, objective: ffm.Objective, fault: FaultPlan = NO_FAULTS):
        self.spec = spec
        self.split = split
        self.objective = objective
        self.fault = fault

        def backend():
            return get_backend(spec.backend, spec.precision, spec.fft_threads, spec.fft_planner)

        self.chip, self.twin = make_chips(spec, backend)
        self.registration_estimate = None
        if spec.calibrate_registration:  # a calibration step before any training
            self.registration_estimate = calibrate_registration(self.chip, self.twin)
        self._programmed: dict[str, int] = {"chip": -1, "twin": -1}

    def _target(self, on: str):
        if on not in ("chip", "twin"):
            raise ValueError(f"on must be 'chip' or 'twin', got {on!r}")
        return self.chip if on == "chip" else self.twin

    def _program(self, on: str, params: dict, version: int):
        target = self._target(on)
        if self._programmed[on] != version:  # SLM writes only when the phases changed
            target.program(params["phase"], params.get("amplitude"))
            self._programmed[on] = version
        return target

    def _inputs(self, subset, idx: np.ndarray):
        g = self.spec.geometry
        if isinstance(g, MeshGeometry):  # feature vectors -> mode amplitudes
            x = encode_modes(subset.images[idx], g.n_modes)
        else:
            x = encode_amplitude(subset.images[idx], g.n, g.object_px)
        return x, self._labels(subset.labels[idx]), subset.ids[idx]

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
        self, params: dict, version: int, shard: np.ndarray, round_index: int, on: str, fidelity: bool = False
    ) -> dict:
        """Data pass + error pass over ``shard`` (indices into the training set) on ``on``.

        Returns NumPy: ``grad/<name>`` (sum over the shard of per-sample gradients of the
        mean loss, scaled to the shard: the coordinator weights by shard size), ``loss``,
        ``n``, ``correct``, ``compute_s`` and, if asked and simulated, ``fidelity_cosine``.
        """
        t0 = time.perf_counter()
        self.fault.maybe_crash(self.spec.index, "round", round_index)
        target = self._program(on, params, version)
        x, y, ids = self._inputs(self.split.train, np.asarray(shard))
        res = ffm.forward_only_step(target, x, y, self.objective, round_index, ids, self.spec.samples_per_pass)
        out = {"grad/phase": res.grad_phase, "loss": res.loss, "n": res.n_samples, "correct": res.n_correct}
        if res.grad_amplitude is not None:
            out["grad/amplitude"] = res.grad_amplitude
        if fidelity and on == "chip":
            truth = ffm.true_gradient(self.chip, x, y, self.objective)
            out["fidelity_cosine"] = ffm.gradient_fidelity(res.grad_phase, truth.grad_phase)["cosine"]
        out["compute_s"] = time.perf_counter() - t0
        return out

    def evaluate(
        self,
        params: dict,
        version: int,
        subset: str,
        round_index: int,
        on: str,
        batch_size: int,
        n_examples: int = 0,
        probabilities: bool = False,
    ) -> dict:
        """Accuracy and confusion matrix on ``subset`` ('val' or 'test'); optional detector images
        and per-sample softmax probabilities of the detector scores (for combining chips)."""
        self.fault.maybe_crash(self.spec.index, subset, round_index)
        target = self._program(on, params, version)
        data = {"val": self.split.val, "test": self.split.test}[subset]
        c = self.spec.geometry.n_classes
        confusion = np.zeros((c, c), dtype=np.int64)
        examples, probs, detected = [], [], 0.0
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            x, y, ids = self._inputs(data, idx)
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
        out = {
            "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
            "confusion": confusion,
            "detected_fraction": detected / max(len(data), 1),
        }
        if n_examples:
            out["examples"] = np.asarray(examples, dtype=np.float32)
        if probabilities:
            out["probabilities"] = np.concatenate(probs)
            out["labels"] = data.labels
        return out

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
        """The chip's hidden imperfections as arrays (logged at the end, for analysis only)."""
        out = self.chip.reveal().as_arrays()
        if self.registration_estimate is not None:
            out["registration_estimate_px"] = self.registration_estimate
        return out

    def detector_regions(self) -> np.ndarray | None:
        """(n, n) class-region image of a camera; None for a mesh (its detectors are modes)."""
        return None if isinstance(self.spec.geometry, MeshGeometry) else self.chip.detectors.region_image()


def make_chips(spec: ChipSpec, backend) -> tuple:
    """The simulated chip and its digital twin for ``spec`` (``backend()`` makes a fresh backend)."""
    g = spec.geometry
    if isinstance(g, MeshGeometry):
        return (
            SimulatedMesh(
                g.n_modes,
                g.n_classes,
                seed=spec.seed,
                arrangement=g.arrangement,
                errors=spec.hardware,
                measurement=spec.measurement,
                backend=backend(),
            ),
            MeshTwin(g.n_modes, g.n_classes, g.arrangement, backend()),
        )
    return (SimulatedChip(g, spec.hardware, spec.measurement, spec.seed, backend()), DigitalTwin(g, backend()))
