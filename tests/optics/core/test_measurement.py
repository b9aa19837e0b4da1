"""The simulated cameras' holographic noise follows ``MeasurementSpec.holography``.

``homodyne`` must reproduce the old model bit for bit (the same keyed normals, std
``0.5 sqrt(1 + read^2 / R) / sqrt(QE N)``); every other scheme scales the same normals by
its own factor per quadrature (docs/design.md section 4.3).
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
    reference_rotation,
)

KEY = PassKey(round=3, pass_name="data", samples=(5, 11), seed=7)
TAP = 2


def _old_measure_field_(field, spec, key, tap, backend, scale=None, rotation=None):
    """The model before ``holography`` existed, written out with NumPy only."""
    qn = spec.photoelectrons
    real = np.dtype(backend.real_dtype)
    pairs = field.view(real).reshape(field.shape + (2,))
    sigma = 0.5 * math.sqrt(1.0 + (spec.level * spec.read_noise_e) ** 2 / max(spec.reference_e_per_px, 1e-9))
    sigma = sigma / math.sqrt(qn)
    noise = np.stack([key.stream(s, tap).standard_normal(field.shape[1:] + (2,), dtype=real.type) for s in key.samples])
    noise *= sigma if scale is None else (sigma * scale.real)[..., None]
    pairs += noise
    if spec.adc_bits > 0:
        peak = np.abs(pairs).reshape(field.shape[0], -1).max(axis=1).reshape(-1, 1, 1, 1)
        step = np.maximum(peak, 1e-30) * (spec.level / (2 ** (spec.adc_bits - 1)))
        pairs /= step
        np.rint(pairs, out=pairs)
        pairs *= step
    if rotation is not None:
        field *= rotation


def _field(rng, backend, shape=(2, 12, 12)):
    f = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / 12
    return f.astype(backend.complex_dtype)


@pytest.mark.parametrize("backend_name", ["be64", "be128"])
@pytest.mark.parametrize("scaled", [False, True])
def test_homodyne_reproduces_the_old_model_bit_for_bit(backend_name, scaled, rng, request):
    backend = request.getfixturevalue(backend_name)
    spec = MeasurementSpec(level=1.3, holography="homodyne")
    scale = backend.asarray(np.array([0.7, 2.5]).reshape(-1, 1, 1), backend.complex_dtype) if scaled else None
    rotation = reference_rotation(spec, KEY, backend)
    clean = _field(rng, backend)
    new, old = clean.copy(), clean.copy()
    measure_field_(new, spec, KEY, TAP, backend, scale, rotation)
    _old_measure_field_(old, spec, KEY, TAP, backend, scale, rotation)
    assert not np.array_equal(new, clean)  # noise was added
    np.testing.assert_array_equal(new, old)


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
