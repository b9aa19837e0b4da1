"""Pipeline topology: layers split across chips give exactly the one-chip gradient."""

import dataclasses

import numpy as np
import pytest

from optics.core.backend import get_backend
from optics.core.data import encode_amplitude, load_digits_split
from optics.core.ffm import Objective, forward_only_step
from optics.core.measurement import MeasurementSpec
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec
from pipeline.run.actors import ChipSpec
from pipeline.run.layer_pipeline import (
    StageWorker,
    make_stage_workers,
    pipeline_evaluate,
    pipeline_round,
    split_params,
    stage_layers,
)

G = Geometry.small(n_layers=5)
OBJ = Objective(temperature=0.01)


def _spec(seed=1, precision="complex128"):
    return ChipSpec(0, seed, G, HardwareSpec(level=0.0), MeasurementSpec.off(), "numpy", precision, 1)


def _whole_network_gradient(split, phases, idx):
    chip = SimulatedChip(G, HardwareSpec(level=0.0), MeasurementSpec.off(), 1, get_backend("numpy", "complex128"))
    chip.program(phases)
    x = encode_amplitude(split.train.images[idx], G.n, G.object_px)
    return forward_only_step(chip, x, split.train.labels[idx], OBJ, 0, split.train.ids[idx])


def test_stage_layers():
    assert stage_layers(5, 2) == [3, 2] and stage_layers(5, 5) == [1] * 5 and stage_layers(5, 1) == [5]
    with pytest.raises(ValueError, match="needs 1 <= n_chips"):
        stage_layers(3, 4)


@pytest.mark.parametrize("sizes", [[3, 2], [2, 1, 2]])
def test_stages_give_the_one_chip_gradient(sizes):
    split = load_digits_split(0)
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (5, G.n, G.n))
    idx = np.arange(12)
    stages = [
        StageWorker(
            dataclasses.replace(_spec(), geometry=dataclasses.replace(G, n_layers=s)), k, len(sizes), split, OBJ
        )
        for k, s in enumerate(sizes)
    ]
    params = split_params({"phase": phases}, sizes)
    micro = np.array_split(idx, 3)
    errors = []
    for mb, m in enumerate(micro):
        field = None
        for k, st in enumerate(stages):
            field = st.forward(params[k], 0, 0, mb, m, field, "chip")
        errors.append(field)
    for mb, m in enumerate(micro):
        err = errors[mb]
        for st in reversed(stages[:-1]):
            err = st.backward(0, mb, m, err, "chip")
    results = [st.finish(0) for st in stages]
    got = np.concatenate([r.grads["phase"] for r in results])
    ref = _whole_network_gradient(split, phases, idx)
    assert np.linalg.norm(got - ref.grad_phase) <= 1e-10 * np.linalg.norm(ref.grad_phase)
    assert abs(results[-1].loss / results[-1].n - ref.loss) < 1e-10


def test_pipeline_round_on_actors(ray_cluster):
    split = load_digits_split(0)
    workers = make_stage_workers((_spec(1), _spec(2)), ray_cluster.put(split), OBJ, 0.5, 0)
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (5, G.n, G.n))
    params = split_params({"phase": phases}, [3, 2])
    results, bubble, _ = pipeline_round(workers, params, [1, 1], np.arange(16), 0, 4, "chip")
    ref = _whole_network_gradient(split, phases, np.arange(16))
    got = np.concatenate([r.grads["phase"] for r in results])
    assert np.linalg.norm(got - ref.grad_phase) <= 1e-10 * np.linalg.norm(ref.grad_phase)
    assert 0.0 <= bubble < 1.0
    acc = pipeline_evaluate(workers, params, [1, 1], "val", len(split.val), 64, 0, "chip")
    assert 0.0 <= acc.accuracy <= 1.0 and acc.confusion.sum() == len(split.val)
    for w in workers:
        ray_cluster.kill(w)
