"""Single-process training: one chip, one process, no Ray (the pipeline's reference loop).

Trainers (``shared/design.md`` section 3):

- ``ideal``: train on the digital twin, test on the twin.
- ``insilico``: train on the twin (exact backprop), deploy the masks on the chip, test there.
- ``ffm``: train on the chip itself with data and error passes (measured fields only).

Model selection uses the validation split only: the phases with the best validation
accuracy on the deployment chip are kept and tested once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from optics import ffm, optim
from optics.chip import DigitalTwin, OpticalChip, SimulatedChip
from optics.data import Dataset, Split, encode_amplitude
from optics.geometry import Geometry
from optics.measurement import PassKey

TRAINERS = ("ffm", "insilico", "ideal")


@dataclass(frozen=True)
class TrainSpec:
    trainer: str = "ffm"
    epochs: int = 4
    batch_size: int = 32
    eval_batch_size: int = 128
    seed: int = 0
    train_amplitude: bool = False
    objective: ffm.Objective = field(default_factory=ffm.Objective)
    optimizer: optim.OptimizerSpec = field(default_factory=optim.OptimizerSpec)

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer must be one of {TRAINERS}, got {self.trainer!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


@dataclass
class EpochLog:
    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float
    fidelity_cosine: float
    seconds: float


@dataclass
class TrainResult:
    params: dict
    history: list
    test_accuracy: float
    twin_test_accuracy: float
    confusion: np.ndarray
    wall_seconds: float
    samples_per_second: float


def evaluate(chip: OpticalChip, data: Dataset, geometry: Geometry, batch_size: int,
             round_index: int) -> tuple[float, np.ndarray]:
    """Accuracy and confusion matrix (true x predicted) of ``chip`` on ``data``."""
    c = geometry.n_classes
    confusion = np.zeros((c, c), dtype=np.int64)
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        x = encode_amplitude(data.images[sl], geometry.n, geometry.object_px)
        key = PassKey(round_index, "inference", tuple(int(i) for i in data.ids[sl]))
        intensity = chip.infer(x, key)
        from optics.detectors import detector_scores  # noqa: PLC0415

        pred = chip.backend.to_numpy(detector_scores(intensity, chip.detectors)).argmax(axis=1)
        np.add.at(confusion, (data.labels[sl], pred), 1)
    return float(np.trace(confusion) / max(confusion.sum(), 1)), confusion


def _program(chip: OpticalChip, params: dict) -> None:
    chip.program(params["phase"], params.get("amplitude"))


def train(geometry: Geometry, split: Split, spec: TrainSpec, twin: DigitalTwin,
          chip: SimulatedChip | None, report: Callable[[EpochLog], None] = lambda _: None) -> TrainResult:
    """Train with ``spec.trainer``; deployment chip is ``chip`` (the twin for 'ideal')."""
    train_on = chip if spec.trainer == "ffm" else twin
    deploy = twin if spec.trainer == "ideal" or chip is None else chip
    shape = (geometry.n_layers, geometry.n, geometry.n)
    params = {"phase": np.full(shape, np.pi)}  # mid-range: away from the SLM phase wrap
    if spec.train_amplitude:
        params["amplitude"] = np.ones(shape)
    state = optim.init_state(spec.optimizer, params)
    best = (-1.0, params)
    history, n_seen, t0, rnd = [], 0, time.perf_counter(), 0
    for epoch in range(spec.epochs):
        te = time.perf_counter()
        order = np.random.default_rng([spec.seed, epoch]).permutation(len(split.train))
        losses, correct, fid = [], 0, float("nan")
        for start in range(0, len(order), spec.batch_size):
            idx = order[start:start + spec.batch_size]
            x = encode_amplitude(split.train.images[idx], geometry.n, geometry.object_px)
            _program(train_on, params)
            res = ffm.forward_only_step(train_on, x, split.train.labels[idx], spec.objective,
                                        rnd, split.train.ids[idx])
            grads = {"phase": res.grad_phase}
            if spec.train_amplitude:
                grads["amplitude"] = res.grad_amplitude
            params, state = optim.step(spec.optimizer, params, grads, state)
            losses.append(res.loss)
            correct += res.n_correct
            n_seen += len(idx)
            rnd += 1
        if spec.trainer == "ffm" and chip is not None:
            x = encode_amplitude(split.train.images[idx], geometry.n, geometry.object_px)
            _program(chip, params)
            fid = ffm.measure_fidelity(chip, x, split.train.labels[idx], spec.objective, rnd,
                                       split.train.ids[idx])["cosine"]
        _program(deploy, params)
        val_acc, _ = evaluate(deploy, split.val, geometry, spec.eval_batch_size, rnd)
        if val_acc > best[0]:
            best = (val_acc, {k: v.copy() for k, v in params.items()})
        log = EpochLog(epoch, float(np.mean(losses)), correct / len(order), val_acc, fid, time.perf_counter() - te)
        history.append(log)
        report(log)
    train_seconds = time.perf_counter() - t0
    params = best[1]
    _program(deploy, params)
    test_acc, confusion = evaluate(deploy, split.test, geometry, spec.eval_batch_size, rnd + 1)
    _program(twin, params)
    twin_acc, _ = evaluate(twin, split.test, geometry, spec.eval_batch_size, rnd + 1)
    return TrainResult(params, history, test_acc, twin_acc, confusion,
                       time.perf_counter() - t0, n_seen / train_seconds)
