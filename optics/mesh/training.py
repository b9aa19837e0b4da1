"""Training an MZI mesh chip (:mod:`optics.mesh.mzi`) on feature vectors: a pure loop over FFM steps.

``train_mesh`` runs :func:`optics.core.ffm.forward_only_step` on the chip it is given: on a
``SimulatedMesh`` that is FFM (measured data and error passes); on a ``MeshTwin`` it is
in-silico backprop (the twin's error pass is the exact transpose). Adam updates only the
physical shifters (``chip.shifter_mask``); the phases with the best validation accuracy
are returned (model selection on validation only). Noise is keyed by round and sample id,
so a run is reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optics.core import optim
from optics.core.data import Dataset, Split, encode_modes
from optics.core.detectors import detector_scores
from optics.core.ffm import Objective, forward_only_step
from optics.core.measurement import PassKey
from optics.core.validate import check_positive


@dataclass(frozen=True)
class MeshTraining:
    """Loop knobs: epochs, samples per round, Adam step (radians), seed of the init and shuffles."""

    epochs: int = 20
    batch: int = 16
    lr: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        check_positive("lr", self.lr)


def initial_phases(chip, seed: int) -> np.ndarray:
    """Uniform in [0, 2 pi) on the shifters, 0 elsewhere (L, N)."""
    rng = np.random.default_rng([int(seed), 0x3E5])
    return rng.uniform(0.0, 2 * np.pi, chip.shifter_mask.shape) * chip.shifter_mask


def accuracy(chip, phases: np.ndarray, data: Dataset, round_index: int = 0, bias: float = 1.0) -> float:
    """Fraction of ``data`` whose brightest detector mode (``chip.infer``) is its label.

    ``data.images`` are feature vectors, encoded by :func:`optics.core.data.encode_modes` with ``bias``."""
    chip.program(phases)
    x = encode_modes(data.images, chip.n_modes, bias)
    intensity = chip.infer(x, PassKey(round_index, "inference", tuple(int(i) for i in data.ids)))
    scores = chip.backend.to_numpy(detector_scores(intensity, chip.detectors))
    return float((scores.argmax(axis=1) == data.labels).mean())


def train_mesh(
    chip,
    split: Split,
    objective: Objective,
    epochs: int = 20,
    batch: int = 16,
    lr: float = 0.1,
    seed: int = 0,
    phases: np.ndarray | None = None,
    bias: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """Train ``chip`` on ``split`` (feature vectors with at most ``chip.n_modes`` features).

    ``epochs`` passes over the training part in rounds of ``batch`` samples, Adam with step
    ``lr`` (radians), ``seed`` for the initial phases (unless ``phases`` is given) and shuffles,
    ``bias`` the reference mode of :func:`optics.core.data.encode_modes`.

    Returns the best-validation phases (L, N) and a history: per-round ``loss``, per-epoch
    ``train_accuracy`` (running, from the training rounds) and ``val_accuracy``,
    ``best_epoch`` and ``seconds`` (wall time of the loop).
    """
    if split.n_classes > chip.n_classes:
        raise ValueError(f"split has {split.n_classes} classes but the chip reads {chip.n_classes} modes")
    spec = MeshTraining(epochs, batch, lr, seed)
    x_train = encode_modes(split.train.images, chip.n_modes, bias)
    rng = np.random.default_rng([int(spec.seed), 0x7A1])
    params = {"phase": initial_phases(chip, spec.seed) if phases is None else np.array(phases, dtype=np.float64)}
    opt = optim.OptimizerSpec("adam", lr=spec.lr)
    state = optim.init_state(opt, params)
    hist = {"loss": [], "train_accuracy": [], "val_accuracy": [], "best_epoch": -1}
    best, best_acc, rnd, start = params["phase"].copy(), -1.0, 0, time.perf_counter()
    for epoch in range(spec.epochs):
        order, correct = rng.permutation(len(split.train)), 0
        for lo in range(0, len(order), spec.batch):
            idx = order[lo : lo + spec.batch]
            chip.program(params["phase"])
            res = forward_only_step(chip, x_train[idx], split.train.labels[idx], objective, rnd, split.train.ids[idx])
            grads = {"phase": res.grad_phase * chip.shifter_mask}
            params, state = optim.step(opt, params, grads, state)
            hist["loss"].append(res.loss)
            correct, rnd = correct + res.n_correct, rnd + 1
        hist["train_accuracy"].append(correct / len(order))
        hist["val_accuracy"].append(accuracy(chip, params["phase"], split.val, rnd, bias))
        if hist["val_accuracy"][-1] > best_acc:
            best, best_acc, hist["best_epoch"] = params["phase"].copy(), hist["val_accuracy"][-1], epoch
    hist["seconds"] = time.perf_counter() - start
    chip.program(best)
    return best, hist
