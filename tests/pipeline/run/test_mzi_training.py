"""MZI mesh training through the pipeline's own pieces, in-process (no Ray, no MLflow).

The loop below is the driver's round loop without the cluster: :class:`ChipWorker` runs the
passes (``run_round``, ``evaluate``), the pure coordinator functions keep the state
(``init_state(init='uniform')``, ``batch_indices``, ``aggregate``, ``step``, ``end_epoch``).
The split is what :func:`pipeline.run.build.load_split` makes for chip=mzi on iris.
"""

import math
import time

import numpy as np

from optics.core.data import load_iris_split, reduce_features
from optics.core.ffm import Objective
from optics.core.measurement import MeasurementSpec
from optics.core.optim import OptimizerSpec
from optics.mesh.layout import MeshErrors, MeshGeometry
from pipeline.run.actors import ChipSpec, ChipWorker
from pipeline.run.coordinator import SHARED, aggregate, batch_indices, end_epoch, init_state, step
from pipeline.run.rounds import fingerprint

GEOMETRY = MeshGeometry(5, 3)
EVAL_BATCH = 128


def _worker(split, objective, level: float, seed: int = 1) -> ChipWorker:
    spec = ChipSpec(0, seed, GEOMETRY, MeshErrors(level=level), MeasurementSpec(level=level))
    return ChipWorker(spec, split, objective)


def _evaluate(worker: ChipWorker, params: dict, subset: str, round_index: int, on: str) -> float:
    return worker.evaluate(params, fingerprint(params), subset, round_index, on, EVAL_BATCH).accuracy


def _train(worker: ChipWorker, on: str, epochs: int = 20, batch: int = 16, lr: float = 0.1, seed: int = 0):
    """Train on ``on`` ('chip': FFM; 'twin': in-silico backprop), validate on the same target.

    Returns the best-validation phases ``{'phase': (L, N)}`` and the final state."""
    opt = OptimizerSpec("adam", lr)
    n_train = len(worker.split.train)
    per_epoch = math.ceil(n_train / batch)
    state = init_state({SHARED: GEOMETRY.phase_shape}, opt, False, [0], init="uniform", seed=seed)
    for _ in range(epochs):
        for _ in range(per_epoch):
            idx = batch_indices(seed, state.epoch, state.position, n_train, batch)
            params = state.params[SHARED]
            res = worker.run_round(params, fingerprint(params), idx, state.round, on)
            state = step(state, aggregate({0: res}, shared=True), opt, per_epoch)
        state = end_epoch(state, _evaluate(worker, state.params[SHARED], "val", state.round, on))
    return state.best_params[SHARED], state


def _ffm_and_in_silico(split, obj, chip_seed: int) -> dict:
    """Test accuracies on mesh ``chip_seed``: FFM on its level-1 chip, the twin-trained phases
    on the twin (ideal) and deployed on the level-1 and level-2 chips; FFM training seconds."""
    level1 = _worker(split, obj, 1.0, chip_seed)
    start = time.perf_counter()
    phases, state = _train(level1, "chip")
    seconds = time.perf_counter() - start
    twin_phases, twin_state = _train(level1, "twin")
    final = twin_state.round + 1
    return {
        "ffm": _evaluate(level1, phases, "test", state.round + 1, "chip"),
        "seconds": seconds,
        "ideal": _evaluate(level1, twin_phases, "test", final, "twin"),
        1.0: _evaluate(level1, twin_phases, "test", final, "chip"),
        2.0: _evaluate(_worker(split, obj, 2.0, chip_seed), twin_phases, "test", final, "chip"),
    }


def test_ffm_learns_iris_on_imperfect_mesh_and_beats_in_silico(capsys):
    """FFM on a level-1 mesh (noise on) reaches >= 0.9 test accuracy; phases trained on the twin
    lose accuracy on the chip, more at level 2. Means over meshes 1-3 (30 test samples each);
    measured: FFM 0.98, twin 0.97, in silico 0.73 at level 1 and 0.57 at level 2."""
    split = reduce_features(load_iris_split(0), 4, "standardise")
    obj = Objective(temperature=0.05)
    runs = [_ffm_and_in_silico(split, obj, chip_seed) for chip_seed in (1, 2, 3)]
    mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    with capsys.disabled():
        print(
            f"\n  iris (mean of 3 meshes): FFM on level-1 mesh {mean['ffm']:.3f} ({mean['seconds']:.1f} s), "
            f"twin {mean['ideal']:.3f}, in silico deployed {mean[1.0]:.3f} (level 1), {mean[2.0]:.3f} (level 2)"
        )
    assert mean["ffm"] >= 0.9 and max(r["seconds"] for r in runs) < 20
    assert mean[2.0] <= mean["ideal"] - 0.2 and mean[2.0] <= mean["ffm"] - 0.3
    assert all(r["ffm"] > r[1.0] and r["ffm"] > r[2.0] for r in runs)  # FFM beats in silico on every mesh
