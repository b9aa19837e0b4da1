"""The measure-and-reload model: the same optics as the monitors model, with noise that compounds."""

from dataclasses import replace

import numpy as np
import pytest

from optics.core.measurement import MeasurementSpec, PassKey
from optics.diffractive import reload
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

G = Geometry.small()
SAMPLES = tuple(range(8))


def _chip(be, model, hardware=None, relay_input=True, **camera):
    spec = MeasurementSpec(model=model, **camera)
    chip = SimulatedChip(G, hardware or HardwareSpec(slm_bits=0), spec, 3, be, relay_input=relay_input)
    chip.program(np.random.default_rng(0).uniform(0, 2 * np.pi, G.phase_shape))
    return chip


def _inputs(rng, b=8):
    x = rng.standard_normal((b, G.n, G.n)) + 0j
    return x / np.sqrt((np.abs(x) ** 2).sum(axis=(1, 2), keepdims=True))


@pytest.mark.parametrize("relay_input", [True, False])
def test_noiseless_reload_is_the_monitored_optics(be128, rng, relay_input):
    """A continuous loader and noiseless cameras: reloading measured fields changes nothing."""
    x = _inputs(rng)
    mon = _chip(be128, "monitors", relay_input=relay_input, level=0.0)
    rel = _chip(be128, "reload", relay_input=relay_input, level=0.0)
    key = PassKey(0, "data", SAMPLES)
    a, b = mon.data_pass(x, key), rel.data_pass(x, key)
    np.testing.assert_allclose(b.output, a.output, atol=1e-12)
    np.testing.assert_allclose(b.intensity, a.intensity, atol=1e-12)
    # the reload taps are what a rig can form: the field it measured times the phase it commanded
    truth = rel.true_data_pass(x)
    realised = rel.transmissions
    commanded = np.exp(1j * rel._commanded[0])
    np.testing.assert_allclose(b.fields, truth.fields / realised[:, None] * commanded[:, None], atol=1e-12)
    e = _inputs(rng)
    ea, eb = mon.error_pass(e, PassKey(0, "error", SAMPLES)), rel.error_pass(e, PassKey(0, "error", SAMPLES))
    np.testing.assert_allclose(eb.fields, ea.fields, atol=1e-12)


def test_reload_noise_compounds_from_hop_to_hop(be128, rng):
    """At low light the detector field of a reloaded chip is further from the truth than a
    monitored one's (each hop adds its own shot's noise to a field the next hop carries)."""
    x = _inputs(rng)
    camera = dict(photons_per_sample=1e4, reference_phase_rad=0.0, adc_bits=0)
    errors = {}
    for model in ("monitors", "reload"):
        chip = _chip(be128, model, **camera)
        truth = chip.true_data_pass(x).output
        out = chip.data_pass(x, PassKey(1, "data", SAMPLES)).output
        errors[model] = np.linalg.norm(out - truth) / np.linalg.norm(truth)
    assert errors["reload"] > 1.5 * errors["monitors"]


def test_reload_noise_is_keyed_per_sample(be128, rng):
    x = _inputs(rng)
    chip = _chip(be128, "reload", photons_per_sample=1e5)
    key = PassKey(2, "data", SAMPLES)
    first, again = chip.data_pass(x, key), chip.data_pass(x, key)
    np.testing.assert_array_equal(first.output, again.output)
    alone = chip.data_pass(x[3:4], replace(key, samples=(3,)))
    np.testing.assert_allclose(alone.output[0], first.output[3], rtol=0, atol=1e-12)
    other = chip.data_pass(x, replace(key, round=3))
    assert not np.allclose(other.output, first.output)


def test_loader_levels_quantise_amplitude_and_phase(be128, rng):
    load = reload.loader_levels(2 * np.pi / 256, be128)
    a = _inputs(rng, 2)
    loaded = load(a)
    c = np.abs(a).reshape(2, -1).max(axis=1).reshape(-1, 1, 1)
    assert np.abs(loaded).max() <= c.max() * (1 + 1e-12)
    np.testing.assert_allclose(np.abs(loaded), np.abs(a), atol=c.max() * 2 * np.pi / 256)
    steps = np.angle(loaded) / (2 * np.pi / 256)
    np.testing.assert_allclose(steps, np.rint(steps), atol=1e-6)
    assert reload.photons_per_pass(1e6, 3, relay_input=True) == 3e6
    assert reload.photons_per_pass(1e6, 3, relay_input=False) == 4e6
