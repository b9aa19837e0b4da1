"""Physics-aware training (PAT): the chip's loss and output error, the twin's Jacobian."""

import numpy as np

from optics.core.data import encode_amplitude, load_digits_split
from optics.core.ffm import Objective, forward_only_step, gradient_fidelity, true_gradient
from optics.core.measurement import MeasurementSpec
from optics.core.pat import physics_aware_step
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

SMALL = Geometry.small(n=48, detector_px=4, object_px=24, distance=0.03)
OBJ = Objective(temperature=0.02)


def _batch(rng, g, b=4):
    x = rng.random((b, g.n, g.n)) * (rng.random((1, g.n, g.n)) > 0.3)
    return x / np.sqrt((x**2).sum(axis=(1, 2), keepdims=True)), rng.integers(0, g.n_classes, b)


def _pair(g, hw, meas, seed, be, phases, amps=None):
    chip, twin = SimulatedChip(g, hw, meas, seed=seed, backend=be), DigitalTwin(g, be)
    chip.program(phases, amps)
    twin.program(phases, amps)
    return chip, twin


def test_pat_equals_true_gradient_on_an_ideal_noise_free_chip(be128, rng):
    """Level 0, noise off: the twin is the chip, so PAT == the chip's true gradient to 1e-10 (complex128),
    phases and amplitudes, whole batch or in parts."""
    shape = (SMALL.n_layers, SMALL.n, SMALL.n)
    phases, amps = rng.uniform(0, 2 * np.pi, shape), rng.uniform(0.4, 1.0, shape)
    chip, twin = _pair(SMALL, HardwareSpec(level=0.0), MeasurementSpec.off(), 7, be128, phases, amps)
    x, y = _batch(rng, SMALL)
    truth = true_gradient(chip, x, y, OBJ)
    for parts in (None, 3):
        pat = physics_aware_step(chip, twin, x, y, OBJ, 0, range(4), samples_per_pass=parts)
        assert abs(pat.loss - truth.loss) <= 1e-12 * abs(truth.loss)
        for a, b in ((pat.grad_phase, truth.grad_phase), (pat.grad_amplitude, truth.grad_amplitude)):
            assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b)


def test_pat_differs_from_ffm_and_in_silico_on_an_imperfect_chip(be128, capsys):
    """Level 1 with only symmetric imperfections, noise off (FFM is exact there): PAT's gradient is
    neither FFM's nor the twin's (in silico); its cosine to the truth lies below FFM's 1."""
    g = Geometry.small()
    split = load_digits_split(0)
    x = encode_amplitude(split.train.images[:16], g.n, g.object_px, np.float64)
    y = split.train.labels[:16]
    phases = np.random.default_rng(5).uniform(2.5, 3.8, (g.n_layers, g.n, g.n))
    hw = HardwareSpec(level=1.0).symmetric_only()
    chip, twin = _pair(g, hw, MeasurementSpec.off(), 11, be128, phases)
    truth = true_gradient(chip, x, y, OBJ).grad_phase
    ffm = forward_only_step(chip, x, y, OBJ, 0, range(16)).grad_phase
    insilico = forward_only_step(twin, x, y, OBJ, 0, range(16)).grad_phase
    pat = physics_aware_step(chip, twin, x, y, OBJ, 0, range(16)).grad_phase
    cos = {
        name: gradient_fidelity(grad, truth)["cosine"]
        for name, grad in (("ffm", ffm), ("pat", pat), ("in silico", insilico))
    }
    with capsys.disabled():
        print(f"\n  gradient cosine to the chip's true gradient at level 1: {cos}")
    assert cos["ffm"] > 1 - 1e-12
    assert cos["pat"] < 0.999
    assert gradient_fidelity(pat, ffm)["relative_error"] > 1e-3
    assert gradient_fidelity(pat, insilico)["relative_error"] > 1e-3


def test_pat_measures_what_ffm_measures(be64, rng):
    """Noise keyed as FFM's data pass: on a noisy level-1 chip PAT's loss, scores and correct count
    are FFM's of the same round and samples (the same camera frames); another round differs."""
    g = Geometry.small()
    phases = np.full((g.n_layers, g.n, g.n), np.pi)
    chip, twin = _pair(g, HardwareSpec(), MeasurementSpec(), 4, be64, phases)
    x, y = _batch(rng, g, 4)
    ffm = forward_only_step(chip, x, y, OBJ, 3, [10, 11, 12, 13])
    pat = physics_aware_step(chip, twin, x, y, OBJ, 3, [10, 11, 12, 13])
    assert pat.loss == ffm.loss and pat.n_correct == ffm.n_correct
    np.testing.assert_array_equal(pat.scores, ffm.scores)
    later = physics_aware_step(chip, twin, x, y, OBJ, 4, [10, 11, 12, 13])
    assert not np.array_equal(later.scores, pat.scores)


def test_pat_is_the_same_step_on_an_mzi_mesh(be128, rng):
    """Any chip with a twin: an ideal, noise-free double-pass mesh gives the true gradient; a level-1
    mesh gives neither FFM's nor the twin's."""
    from optics.mesh.mzi import MeshTwin, SimulatedMesh

    x = rng.standard_normal((6, 5)) + 1j * rng.standard_normal((6, 5))
    x, y = x / np.linalg.norm(x, axis=1, keepdims=True), rng.integers(0, 3, 6)
    obj = Objective(temperature=0.1)
    twin = MeshTwin(5, 3, "double", be128)
    for level in (0.0, 1.0):
        chip = SimulatedMesh(5, 3, level=level, seed=3, measurement=MeasurementSpec.off(), backend=be128)
        phases = rng.uniform(0.2, 2 * np.pi - 0.2, chip.shifter_mask.shape)
        chip.program(phases)
        twin.program(phases)
        pat = physics_aware_step(chip, twin, x, y, obj, 0, range(6)).grad_phase
        truth = true_gradient(chip, x, y, obj).grad_phase
        if level == 0.0:
            assert np.linalg.norm(pat - truth) <= 1e-10 * np.linalg.norm(truth)
        else:
            ffm = forward_only_step(chip, x, y, obj, 0, range(6)).grad_phase
            insilico = forward_only_step(twin, x, y, obj, 0, range(6)).grad_phase
            assert gradient_fidelity(pat, ffm)["relative_error"] > 1e-3
            assert gradient_fidelity(pat, insilico)["relative_error"] > 1e-3
