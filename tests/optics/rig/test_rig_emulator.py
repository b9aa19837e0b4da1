"""The emulated rig's physics: the hop of a time-multiplexed simulated chip, keyed noise and drift."""

from dataclasses import replace

import numpy as np
import pytest

from optics.core.backend import get_backend
from optics.core.measurement import MeasurementSpec
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec, draw_hidden_state
from optics.rig.emulator import Bench, EmulatorSpec, emulated_hardware
from optics.rig.instruments import quiet_slmsuite

quiet_slmsuite()


def _show(hardware, amplitude, phase, design):
    amp, ph, des = hardware[:3]
    amp.set_phase(2 * np.arcsin(amplitude))
    ph.set_phase(phase)
    des.set_phase(design)


def test_time_multiplexed_chip_repeats_its_one_layer_hop():
    g = Geometry.small()
    hw = HardwareSpec(time_multiplexed=True)
    one, deep = draw_hidden_state(hw, replace(g, n_layers=1), 7), draw_hidden_state(hw, g, 7)
    for layer in range(g.n_layers):
        np.testing.assert_array_equal(deep.phase_screens[layer], one.phase_screens[0])
        assert deep.distances[layer + 1] == one.distances[1]
        np.testing.assert_array_equal(deep.shifts_m[layer + 1], one.shifts_m[1])
    assert not np.array_equal(draw_hidden_state(HardwareSpec(), g, 7).phase_screens[1], deep.phase_screens[1])


def test_bench_field_is_the_simulated_hop_of_what_the_slms_show():
    spec = EmulatorSpec(seed=3)
    hardware = emulated_hardware(spec)
    bench: Bench = hardware[0].bench
    rng = np.random.default_rng(0)
    n = spec.geometry.n
    amplitude, phase, design = rng.uniform(0.1, 1, (n, n)), rng.uniform(0, 6, (n, n)), rng.uniform(0, 6, (n, n))
    _show(hardware, amplitude, phase, design)
    oracle = SimulatedChip(
        replace(spec.geometry, n_layers=1),
        spec.hardware_spec,
        MeasurementSpec.off(),
        spec.seed,
        get_backend("numpy", "complex128"),
        relay_input=True,
    )
    levels = 2 * np.pi / 2**spec.slm_bits
    q = lambda p: np.mod(np.rint(p / levels), 2**spec.slm_bits) * levels  # noqa: E731 -- the SLMs' levels
    oracle.program(q(design)[None])
    loaded = np.sin(q(2 * np.arcsin(amplitude)) / 2) * np.exp(1j * q(phase))
    expected = oracle.true_data_pass(loaded[None]).output[0]
    # slmsuite keeps phases in float32: a pixel on a level boundary may round to the next level
    np.testing.assert_allclose(bench.field(), expected, rtol=0, atol=3e-3 * np.abs(expected).max())
    assert bench.slm_writes == 3


def test_frames_are_keyed_by_seed_and_frame_index_not_the_clock():
    def frames(seed):
        hardware = emulated_hardware(EmulatorSpec(seed=seed))
        _show(hardware, np.full((64, 64), 0.5), np.zeros((64, 64)), np.zeros((64, 64)))
        return np.stack([hardware[3].get_image() for _ in range(3)])

    a, b, c = frames(1), frames(1), frames(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # shot noise and drift move on every frame


def test_scheduled_drift_jump_turns_the_interference():
    # frame 0 is the one slmsuite's Camera takes when it is made
    spec = EmulatorSpec(seed=1, drift_rad_per_frame=0.0, drift_jumps=((2, np.pi),), read_noise_e=0.0)
    hardware = emulated_hardware(spec)
    _show(hardware, np.full((64, 64), 0.5), np.zeros((64, 64)), np.zeros((64, 64)))
    cam = hardware[3]
    before, after = cam.get_image().astype(float), cam.get_image().astype(float)
    field = hardware[0].bench.field()
    e = field * np.sqrt(spec.quantum_efficiency * spec.photons_per_px_s * spec.exposure_s)
    r = np.sqrt(spec.reference_e_per_px_s * spec.exposure_s)
    gain = spec.full_well_e / (2**spec.adc_bits - 1)
    cross = 2 * r * e.real / gain  # the interference term flips sign with a pi jump
    diff = before - after
    assert np.corrcoef(diff.ravel(), 2 * cross.ravel())[0, 1] > 0.9


def test_scheduled_faults_and_virtual_clock():
    spec = EmulatorSpec(seed=1, fault_frames=(2,), fault_kind="drop")
    hardware = emulated_hardware(spec)
    cam, bench = hardware[3], hardware[0].bench
    assert bench.frames == 1  # slmsuite's Camera takes one frame when it is made
    cam.capture_attempts = 1
    cam.get_image()
    with pytest.raises(ConnectionAbortedError):
        cam.get_image()
    cam.get_image()
    assert bench.frames == 4
    # four frames at max(exposure, 1 / 30 fps) on a virtual clock: nothing slept
    assert bench.clock_s == pytest.approx(4 / spec.frame_rate_hz)
    with pytest.raises(ValueError, match="fault_kind"):
        EmulatorSpec(fault_kind="smoke")


def test_spec_round_trips_through_json():
    spec = EmulatorSpec(seed=4, level=0.5, hardware={"registration_shift_px": 0.3}, drift_jumps=((10, 1.0),))
    assert EmulatorSpec.from_json(spec.to_json()) == spec
