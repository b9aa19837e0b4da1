"""RigChip on an emulated rig in this process: calibrations, measured fields, FFM gradients, drift, faults.

The emulated instruments are the real slmsuite SLM and Camera subclasses the server holds
(``optics.rig.emulator``); the TCP path is in test_rig_remote.py. Light at the default
budget: 1e6 photons per pixel per second at loader amplitude 1 and a 10 ms exposure (about
6,400 photoelectrons per pixel), a 2,000 e- reference, 2.5 e- read noise, 12-bit ADC.
"""

from dataclasses import replace

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from optics.core import ffm
from optics.core.backend import get_backend
from optics.core.data import encode_amplitude
from optics.core.measurement import MeasurementSpec
from optics.diffractive.chip import DigitalTwin, SimulatedChip
from optics.diffractive.geometry import Geometry
from optics.rig.chip import RigChip, RigFault, RigSettings
from optics.rig.emulator import EmulatorSpec, emulated_hardware
from optics.rig.holography import fourier_shift
from optics.rig.instruments import RigInstruments, quiet_slmsuite

quiet_slmsuite()
G = Geometry.small()


def _rig(spec: EmulatorSpec, **settings):
    hardware = emulated_hardware(spec)
    be = get_backend("numpy", "complex64")
    chip = RigChip(spec.geometry, RigInstruments(*hardware[:4]), RigSettings(virtual_clock=True, **settings), be)
    return chip, hardware[0].bench, DigitalTwin(spec.geometry, be, relay_input=True)


def _oracle(spec: EmulatorSpec, geometry: Geometry):
    be = get_backend("numpy", "complex128")
    return SimulatedChip(geometry, spec.hardware_spec, MeasurementSpec.off(), spec.seed, be, relay_input=True)


def _batch(n=12):
    from sklearn.datasets import load_digits

    digits = load_digits()
    return encode_amplitude(digits.images[:n] / 16.0, G.n, G.object_px), digits.target[:n]


def _smooth_phases(seed=0):
    """Phases as training leaves them: pi plus a smooth ~1 rad pattern per layer."""
    rng = np.random.default_rng(seed)
    return np.pi + np.stack([8 * gaussian_filter(rng.standard_normal((G.n, G.n)), 2) for _ in range(G.n_layers)])


def test_calibrations_measure_the_hidden_rig():
    spec = EmulatorSpec(seed=2, hardware={"registration_shift_px": 0.5})
    chip, bench, twin = _rig(spec)
    done = {c.name: c for c in chip.calibrate(twin)}
    assert set(done) == {"reference", "exposure", "throughput", "registration", "response"}
    assert all(c.frames > 0 for c in done.values())
    assert sum(c.frames for c in chip.drain_calibrations()) == chip.counters()["frames"]
    hidden = bench.hop.reveal()
    gain = spec.full_well_e / (2**spec.adc_bits - 1)
    assert chip.state.throughput == pytest.approx(spec.quantum_efficiency * spec.photons_per_px_s / gain, rel=0.03)
    assert chip.state.gamma == pytest.approx(hidden.gamma, abs=0.01)
    # residual registration at this light: at most 0.05 px, with the SLM's 0.3 rad phase screen on
    residual = chip.state.shift_px - hidden.shifts_m[1] / G.pitch
    assert np.abs(residual).max() <= 0.05


# off-axis: a camera with 6 pixels per SLM pixel and a reference tilted by (0.25, 0.25) cycles per
# camera pixel, the smallest that keeps the field's band (a disc of radius sqrt(2)/2/6) clear of DC
OFF_AXIS = {"camera_oversample": 6, "off_axis_carrier_cyc_per_px": (0.25, 0.25)}


@pytest.mark.parametrize("scheme", ["3-step", "4-step", "off-axis"])
def test_measured_field_matches_the_hop_and_improves_with_light(scheme):
    errors = []
    oversampled = OFF_AXIS if scheme == "off-axis" else {}
    # off-axis spends the whole budget on one frame: at the default light it is already near the floor
    for light in (0.1, 10.0) if scheme == "off-axis" else (1.0, 100.0):
        spec = EmulatorSpec(
            seed=2,
            photons_per_px_s=1e6 * light,
            reference_e_per_px_s=2e5 * light,
            full_well_e=4e4 * light,
            camera_oversample=oversampled.get("camera_oversample", 1),
            reference_carrier_cyc_per_px=oversampled.get("off_axis_carrier_cyc_per_px", (0.0, 0.0)),
        )
        chip, _, twin = _rig(spec, scheme=scheme, **oversampled)
        chip.calibrate(twin)
        rng = np.random.default_rng(1)
        f = rng.uniform(0, 1, (G.n, G.n)) * np.exp(1j * rng.uniform(0, 6, (G.n, G.n)))
        f /= np.abs(f).max()
        chip.write_design(np.zeros((G.n, G.n)))
        measured = chip.shot(f)
        oracle = _oracle(spec, replace(G, n_layers=1))
        oracle.program(np.zeros((1, G.n, G.n)))
        truth = fourier_shift(oracle.true_data_pass(f[None]).output[0], -chip.state.shift_px)
        measured = measured * np.exp(-1j * np.angle(np.vdot(truth, measured)))  # the reference's constant phase
        errors.append(np.linalg.norm(measured - truth) / np.linalg.norm(truth))
    assert errors[0] < 0.05
    assert errors[1] < 0.02  # the floor: 8-bit loader levels and the registration residual
    assert errors[1] < 0.75 * errors[0]


def _fidelity(chip, spec, phases, x, labels, between=None):
    chip.program(phases)
    oracle = _oracle(spec, G)
    oracle.program(np.stack([chip.design_command(p) for p in phases]))
    true = ffm.true_gradient(oracle, x, labels, ffm.Objective())
    taps = chip.data_pass(x, None)
    _, e, _ = ffm.detector_error(chip, taps, labels, ffm.Objective())
    if between is not None:
        between()
    etaps = chip.error_pass(e, None)
    grad = ffm.layer_gradients(chip, taps.fields, etaps.fields)["phase"]
    return ffm.gradient_fidelity(grad, true.grad_phase)["cosine"]


@pytest.mark.parametrize("level, floor", [(0.0, 0.99), (1.0, 0.85)])
def test_ffm_gradient_on_the_rig_follows_the_true_gradient(level, floor):
    spec = EmulatorSpec(seed=1, level=level)
    chip, _, twin = _rig(spec)
    chip.calibrate(twin)
    x, labels = _batch()
    assert _fidelity(chip, spec, _smooth_phases(), x, labels) > floor


def test_drift_calibration_undoes_a_reference_jump_between_the_passes():
    spec = EmulatorSpec(seed=1)
    x, labels = _batch()

    def run(jump_rad, every):
        chip, bench, twin = _rig(spec, drift_every_batches=every)
        chip.calibrate(twin)
        chip.program(_smooth_phases())
        chip.data_pass(x[:1], None)  # batch 0 (always re-measured); the next is batch 1

        def jump():
            bench.theta += jump_rad

        return _fidelity(chip, spec, _smooth_phases(), x, labels, between=jump)

    undrifted = run(0.0, 1)
    assert run(1.0, 1) == pytest.approx(undrifted, abs=0.02)
    assert run(1.0, 10**6) < undrifted - 0.05  # the same jump, never re-measured, hurts


def test_dropped_frames_are_retried_then_fail_the_chip():
    x, _ = _batch(2)

    def rig_failing(n_frames):
        chip, bench, twin = _rig(EmulatorSpec(seed=1), frame_retries=3)
        chip.calibrate(twin)
        chip.program(_smooth_phases())
        bench.spec = replace(bench.spec, fault_frames=tuple(range(bench.frames + 5, bench.frames + 5 + n_frames)))
        return chip

    chip = rig_failing(2)
    chip.data_pass(x, None)
    assert chip.bus.counters.retries == 2
    with pytest.raises(RigFault, match="failed 4 times"):
        rig_failing(4).data_pass(x, None)


def test_counts_frames_writes_and_rig_seconds():
    chip, bench, twin = _rig(EmulatorSpec(seed=1))
    chip.calibrate(twin)
    x, _ = _batch(4)
    before = chip.counters()
    chip.infer(x, None)
    after = chip.counters()
    frames = after["frames"] - before["frames"]
    writes = after["slm_writes"] - before["slm_writes"]
    # per sample and hop: 3 phase steps (3 frames, 3 phase writes) and one amplitude write; one design write per hop
    assert frames >= 4 * G.n_layers * 3 and writes >= G.n_layers * (1 + 4 * 4)
    assert frames == bench.frames - 1 - before["frames"]  # slmsuite's Camera took one frame when made
    settle = 0.15 * writes + frames / 30.0  # 10 ms exposures at 30 fps
    assert after["rig_seconds"] - before["rig_seconds"] >= settle
    assert chip.seconds_per_sample()["infer"] > 0


def test_bad_rigs_are_refused_before_any_frame():
    with pytest.raises(ValueError, match="pitch"):
        hardware = emulated_hardware(EmulatorSpec(geometry=replace(G, pitch=8e-6)))
        RigChip(G, RigInstruments(*hardware[:4]), RigSettings())
    hardware = emulated_hardware(EmulatorSpec(geometry=Geometry.small(n=48, detector_px=4, object_px=24)))
    with pytest.raises(ValueError, match="fewer than the geometry"):
        RigChip(G, RigInstruments(*hardware[:4]), RigSettings())
    hardware = emulated_hardware(EmulatorSpec())
    with pytest.raises(ValueError, match="off-axis needs a camera oversampling"):
        RigSettings(scheme="off-axis")
    with pytest.raises(ValueError, match="fewer than rig.camera_oversample"):
        RigChip(G, RigInstruments(*hardware[:4]), RigSettings(scheme="off-axis", **OFF_AXIS))
    with pytest.raises(ValueError, match="does not fit carrier"):
        RigSettings(scheme="off-axis", camera_oversample=4, off_axis_carrier_cyc_per_px=(0.25, 0.25))
    with pytest.raises(ValueError, match="scheme must be one of"):
        RigSettings(scheme="5-step")
    chip = RigChip(G, RigInstruments(*hardware[:4]), RigSettings())
    assert hardware[0].bench.frames == 1  # only the frame slmsuite's Camera took when it was made
    with pytest.raises(RuntimeError, match="not calibrated"):
        chip.data_pass(_batch(1)[0], None)


def test_timing_model_counts_what_the_rig_does():
    from optics.rig.timing import PAPER_RIG, RigTiming

    chip, _, twin = _rig(EmulatorSpec(seed=1), drift_every_batches=10**6)
    chip.calibrate(twin)
    chip.program(_smooth_phases())
    x, labels = _batch(6)
    chip.data_pass(x[:1], None)  # batch 0 re-measures the drift; the next batch does not
    before = chip.counters()
    taps = chip.data_pass(x, None)
    _, e, _ = ffm.detector_error(chip, taps, labels, ffm.Objective())
    chip.error_pass(e, None)
    after = chip.counters()
    model = RigTiming().training_sample(G.n_layers, batch=6)
    retakes = after["retakes"] - before["retakes"]  # a saturated shot is taken again: 3 writes, 3 frames
    assert after["frames"] - before["frames"] == model["frames"] * 6 + 3 * retakes
    assert after["slm_writes"] - before["slm_writes"] == pytest.approx(model["slm_writes"] * 6 + 4 * retakes)
    modelled_s = model["seconds"] * 6 + retakes * (4 * 0.15 + 3 / 30)
    spent = after["rig_seconds"] - before["rig_seconds"]
    assert modelled_s <= spent < modelled_s + 10.0  # the rest is this process's call time
    # the paper's rig: 0.73 s per hop (4 writes of 0.15 s and 3 frames at 30 fps), about 12 s per sample at 8 layers
    assert PAPER_RIG.per_sample(1, batch=10**9)["seconds"] == pytest.approx(0.7, abs=0.01)
    assert PAPER_RIG.training_sample(8, batch=10)["seconds"] == pytest.approx(11.5, abs=0.5)
