"""The simulated cameras' holographic noise follows ``MeasurementSpec.holography``.

Every scheme scales the same keyed normals by its own factor per quadrature (homodyne
``0.5 sqrt(1 + read^2 / R) / sqrt(QE N)``; docs/design.md section 4.3). The streams themselves
are tested in test_keyed_noise.py.
"""

import math

import numpy as np
import pytest

from optics.core.holographic_noise import quadrature_factors
from optics.core.measurement import (
    MeasurementSpec,
    PassKey,
    field_noise_std,
    measure_field_,
)

KEY = PassKey(round=3, pass_name="data", samples=(5, 11), seed=7)
TAP = 2


def _field(rng, backend, shape=(2, 12, 12)):
    f = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / 12
    return f.astype(backend.complex_dtype)


@pytest.mark.parametrize("scheme", ["homodyne", "3-step", "4-step", "off-axis"])
def test_each_scheme_scales_the_same_keyed_normals(scheme, be128):
    """No ADC, no reference phase, a dark field: the noise is ``k_scheme / k_homodyne`` times the homodyne noise."""
    quiet = {"adc_bits": 0, "reference_phase_rad": 0.0}
    homodyne, measured = np.zeros((2, 12, 12), np.complex128), np.zeros((2, 12, 12), np.complex128)
    measure_field_(homodyne, MeasurementSpec(holography="homodyne", **quiet), KEY, TAP, be128)
    measure_field_(measured, MeasurementSpec(holography=scheme, **quiet), KEY, TAP, be128)
    k_re, k_im = quadrature_factors(scheme)
    assert np.abs(homodyne).min() > 0
    np.testing.assert_allclose(measured.real, homodyne.real * (k_re / 0.5), rtol=1e-13)
    np.testing.assert_allclose(measured.imag, homodyne.imag * (k_im / 0.5), rtol=1e-13)


def test_four_step_is_the_default_and_costs_sqrt2_over_homodyne():
    spec = MeasurementSpec()
    assert spec.holography == "4-step" and spec.model == "monitors"
    bound = field_noise_std(MeasurementSpec(holography="homodyne"))
    np.testing.assert_allclose(np.array(field_noise_std(spec)) / np.array(bound), math.sqrt(2), rtol=1e-12)
    assert bound[0] == 0.5 * math.sqrt(1 + 2.5**2 / 100) / math.sqrt(0.64 * 1e7)


def test_three_step_quadratures_differ_in_a_large_sample(be128):
    """The keyed normals at the stated std: Re ``sqrt(3/8)``, Im ``sqrt(9/8)`` times the bound."""
    spec = MeasurementSpec(holography="3-step", adc_bits=0, reference_phase_rad=0.0)
    field = np.zeros((2, 256, 256), dtype=np.complex128)
    measure_field_(field, spec, KEY, TAP, be128)
    std_re, std_im = field_noise_std(spec)
    tolerance = 5 / math.sqrt(2 * field.size)  # relative error of an rms over that many normals
    np.testing.assert_allclose([field.real.std(), field.imag.std()], [std_re, std_im], rtol=tolerance)
    assert std_im / std_re == pytest.approx(math.sqrt(3), rel=1e-12)


def test_reload_model_is_accepted():
    assert MeasurementSpec(model="reload").model == "reload"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"holography": "5-step"}, "holography must be one of"),
        ({"model": "relay"}, "model must be one of"),
    ],
)
def test_bad_choice_raises_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        MeasurementSpec(**kwargs)
    assert "\n" not in str(err.value)
