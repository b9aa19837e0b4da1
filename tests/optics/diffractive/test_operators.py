"""Dot-product tests for every linear operator used in training."""

import numpy as np

from optics.core.detectors import detector_scores, scores_transpose
from optics.core.measurement import MeasurementSpec
from optics.core.propagation import propagate, propagate_transpose
from optics.diffractive import donn
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.detectors import make_detectors
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec


def test_detector_scores_transpose(be128, rng):
    g = Geometry.small()
    det = make_detectors(g, be128)
    intensity, ds = rng.random((3, 64, 64)), rng.standard_normal((3, 10))
    lhs = np.sum(detector_scores(intensity, det) * ds)
    rhs = np.sum(intensity * scores_transpose(ds, det))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    regions = det.region_image()
    assert (regions >= 0).sum() == 10 * 36 and len(set(regions.ravel())) == 11


def test_network_transpose_pass_is_the_adjoint_of_the_data_pass(be128, rng):
    """x -> y is linear for fixed masks (M); the exact error pass gives M^T, on an asymmetric chip too."""
    g = Geometry.small(n=40, object_px=20, detector_px=4, distance=0.03)
    chip = SimulatedChip(
        g, HardwareSpec(level=2.0, registration_shift_px=0.2), MeasurementSpec.off(), seed=5, backend=be128
    )
    chip.program(rng.uniform(0, 6, (g.n_layers, 40, 40)), rng.uniform(0.3, 1, (g.n_layers, 40, 40)))
    x = rng.standard_normal((2, 40, 40)) + 1j * rng.standard_normal((2, 40, 40))
    e = rng.standard_normal((2, 40, 40)) + 1j * rng.standard_normal((2, 40, 40))
    y = donn.data_pass(x, chip.transmissions, chip.props).output
    eps = chip.true_error_pass(e).fields[0]  # error arriving at layer 1
    mt_e = propagate_transpose(eps * chip.transmissions[0], chip.props[0])
    lhs, rhs = np.sum(y * e), np.sum(x * mt_e)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    # and the forward-only pass is *not* the adjoint on this asymmetric chip
    eps_f = donn.error_pass(e, chip.transmissions, chip.props, transpose=False).fields[0]
    mt_f = propagate(eps_f * chip.transmissions[0], chip.props[0])
    assert abs(np.sum(x * mt_f) - lhs) > 1e-6 * abs(lhs)


def test_output_field_matches_data_pass(be128, rng):
    g = Geometry.small()
    chip = SimulatedChip(g, seed=1, measurement=MeasurementSpec.off(), backend=be128)
    chip.program(rng.uniform(0, 6, (g.n_layers, 64, 64)))
    x = rng.random((2, 64, 64))
    taps = chip.true_data_pass(x)
    np.testing.assert_allclose(chip.infer(x, _key()), taps.intensity, atol=1e-14)


def _key():
    from optics.core.measurement import PassKey

    return PassKey(0, "inference", (0, 1))
