"""The rig chip system's adapter: config, the typed rig spec, resources, claims, and the driver's
attach (emulated rigs started and stopped, every rig checked before any frame), without Ray."""

import socket

import pytest
from conftest import compose

from optics.rig.emulator import answers, free_port
from pipeline import chips
from pipeline.chips.base import CLAIMS_NAMESPACE, attach_of, claim_of, drives_rig, resources_of
from pipeline.config import ConfigError, RigConfig, load_config
from pipeline.run.build import make_plan
from pipeline.run.coordinator import calibration_metrics, summed_counters
from pipeline.run.hardware import project_epoch

RIG = chips.system("rig")


def _plan(*overrides, n_classes=10):
    return make_plan(load_config(compose("chip=rig", "tracking=none", *overrides)), n_classes)


def _serves(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return answers(host, int(port), timeout_s=2.0)


def test_chip_rig_composes_a_small_single_chip_with_an_optical_chip_and_the_schema_defaults():
    cfg = load_config(compose("chip=rig"))
    assert (cfg.chip.kind, cfg.chip.geometry, cfg.topology.kind, cfg.topology.n_chips) == ("rig", "small", "single", 1)
    assert cfg.chip.resources == {"optical_chip": 1}
    assert cfg.rig == RigConfig()  # conf/chip/rig.yaml lists exactly the dataclass defaults
    assert load_config(compose("chip=rig", "topology=data_parallel")).topology.n_chips == 2  # the group still wins


def test_a_rig_spec_follows_the_chip_seed_and_level_and_the_rig_keys():
    (spec,) = _plan("chip.level=0.5", "+chip.hardware.phase_screen_rad=0.1").chips
    rig = spec.rig
    assert rig.address is None and rig.settings.virtual_clock  # an emulated rig counts its clock
    assert rig.settings.scheme == "3-step" and rig.roles.camera == "camera" and rig.roles.intensity_camera is None
    assert (rig.emulator["seed"], rig.emulator["level"]) == (spec.seed, 0.5)
    assert rig.emulator["hardware"] == {"phase_screen_rad": 0.1}  # only what chip.hardware changed
    (spec,) = _plan("rig.emulator.seed=7", "rig.scheme=4-step", "rig.averaging=2").chips
    assert spec.rig.emulator["seed"] == 7 and (spec.rig.settings.scheme, spec.rig.settings.averaging) == ("4-step", 2)
    (spec,) = _plan("rig.address=10.0.0.5:5025", "rig.hardware.design_phase=null", "rig.settle_s=0.05").chips
    assert spec.rig.address == "10.0.0.5:5025" and spec.rig.emulator is None and not spec.rig.settings.virtual_clock
    assert spec.rig.roles.design_phase is None and spec.rig.settle_s == 0.05


def test_simulated_specs_carry_no_rig_and_ask_for_no_hardware():
    cfg = load_config(compose("debug=smoke", "tracking=none"))
    assert all(spec.rig is None for spec in make_plan(cfg, 10).chips)
    for kind in ("diffractive", "mzi"):
        system = chips.system(kind)
        assert not drives_rig(system) and resources_of(system, {}) == {}
        assert resources_of(system, {"optical_chip": 1}) == {"optical_chip": 1.0}  # as asked, nothing added


def test_a_rig_chip_always_needs_an_optical_chip():
    assert drives_rig(RIG)
    assert resources_of(RIG, {}) == {"optical_chip": 1.0}  # even when chip.resources is cleared
    assert resources_of(RIG, {"optical_chip": 2, "lab": 1}) == {"optical_chip": 2.0, "lab": 1.0}
    assert resources_of(RIG, {"optical_chip": 0}) == {"optical_chip": 1.0}


def test_a_rig_is_claimed_by_a_named_actor_per_address():
    (spec,) = _plan("rig.address=10.0.0.5:5025").chips
    claim = claim_of(RIG, spec)
    assert claim.name == "rig@10.0.0.5:5025"
    assert claim.refusal.startswith("rig 10.0.0.5:5025 is held by another run (Ray actor rig@10.0.0.5:5025")
    assert CLAIMS_NAMESPACE in claim.refusal and "\n" not in claim.refusal
    (emulated,) = _plan().chips
    assert claim_of(RIG, emulated) is None  # not attached yet: no address to hold
    assert claim_of(chips.system("diffractive"), make_plan(load_config(compose("debug=smoke")), 10).chips[0]) is None


@pytest.mark.parametrize(
    "overrides,match",
    [
        (("rig.scheme=5-step",), "rig.scheme must be one of 3-step, 4-step, off-axis; got '5-step'"),
        (("rig.address=localhost",), "rig.address must be HOST:PORT"),
        (("rig.address=10.0.0.5:70000",), "rig.address must be HOST:PORT"),
        (("rig.averaging=0",), "rig.averaging must be a finite number > 0"),
        (("rig.frame_retries=-1",), "rig.frame_retries must be a finite number >= 0"),
        (("rig.frame_timeout_s=0",), "rig.frame_timeout_s must be a finite number > 0"),
        (("rig.emulator.fault_frames=[-1]",), "rig.emulator.fault_frames must list frame indices >= 0"),
        (("rig.scheme=off-axis",), "off-axis"),  # a camera that does not oversample the field cannot
        (("rig.address=10.0.0.5:5025", "topology=data_parallel"), "topology.n_chips=2 chips would each claim it"),
        (("cluster=address",), "rig.address=null starts emulated rigs on this machine"),
        (("topology=pipeline",), "topology=pipeline cannot run chip=rig"),
        (("chip.only=slm",), "chip.only selects a simulated chip's imperfection groups"),
        (("chip.calibrate_registration=true",), "chip.calibrate_registration needs chip=diffractive"),
    ],
)
def test_bad_rig_settings_are_one_line_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as e:
        _plan(*overrides)
    assert "\n" not in str(e.value)


def test_rig_keys_on_a_simulated_chip_are_refused():
    with pytest.raises(ConfigError, match="rig.address applies to a chip that drives a rig") as e:
        load_config({"rig": {"address": "10.0.0.5:5025"}})
    assert "chip=rig" in str(e.value)


def test_attach_starts_checks_and_stops_an_emulated_rig_per_chip():
    plan = _plan("topology=data_parallel")
    with attach_of(RIG, plan.chips) as attached:
        addresses = [spec.rig.address for spec in attached]
        assert len(set(addresses)) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
        assert all(_serves(a) for a in addresses)
        assert [spec.index for spec in attached] == [0, 1] and attached[0].rig.emulator["seed"] == plan.chips[0].seed
    assert not any(_serves(a) for a in addresses)  # stopped with the block


@pytest.mark.parametrize(
    "overrides,match",
    [
        (("rig.emulator.pitch_m=8e-6",), "pitch but the geometry's is 36 um"),
        (
            ("rig.camera_oversample=2", "rig.emulator.camera_oversample=1"),
            r"camera camera has \(64, 64\) px, fewer than rig.camera_oversample x n = 128",
        ),
        (("rig.hardware.camera=nope",), "no hardware named .*'nope'.*set rig.hardware.<role>"),
        (("rig.emulator.fault_kind=melt",), "rig.emulator: fault_kind must be one of"),
    ],
)
def test_a_rig_that_cannot_run_the_chip_is_one_line_before_any_frame(overrides, match, monkeypatch):
    started = []
    import optics.rig.emulator as emulator

    def start(spec, host="127.0.0.1"):
        started.append(emulator.EmulatedRig(spec, host))
        return started[-1]

    monkeypatch.setattr(emulator, "start_emulated_rig", start)
    with pytest.raises(ValueError, match=match) as e, attach_of(RIG, _plan(*overrides).chips):
        pass
    assert "\n" not in str(e.value)
    assert all(rig.process.poll() is not None for rig in started)  # whatever it started is stopped


def test_an_unreachable_rig_address_is_one_line_naming_the_fix():
    port = free_port()
    with pytest.raises(ValueError, match=f"rig.address 127.0.0.1:{port}: no slmsuite server answers") as e:
        with attach_of(RIG, _plan(f"rig.address=127.0.0.1:{port}").chips):
            pass
    assert "rig.address=null" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConnectionRefusedError):  # and nothing was started there
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_projected_epoch_is_rounds_times_shard_times_train_plus_evaluation():
    seconds = [{"train": 4.0, "infer": 2.0}, {"train": 5.0, "infer": 1.5}]
    p = project_epoch(seconds, rounds=10, per_chip=8, n_eval=100, train_on_chip=True, deploy_on_chip=True)
    assert p["rig/projected_epoch_s"] == 10 * 8 * 5.0 + 100 * 2.0  # the slowest rig sets the pace
    assert p["rig/projected_train_s"] == 400.0 and p["rig/projected_eval_s"] == 200.0
    insilico = project_epoch(seconds, 10, 8, 100, train_on_chip=False, deploy_on_chip=True)
    assert insilico["rig/projected_epoch_s"] == 200.0  # trained on the twin, tested on the rig


def test_counters_sum_over_chips_and_repeated_calibrations_are_numbered():
    summed = summed_counters([{"frames": 10, "rig_seconds": 2.0}, None, {"frames": 5, "rig_seconds": 3.0}])
    assert summed == {"rig/frames": 15.0, "rig/rig_seconds": 5.0, "rig/rig_seconds_max": 3.0}
    assert summed_counters([None, None]) == {}
    drift = [{"name": "drift", "values": {"drift_rad": 0.1}, "frames": 3}] * 2
    assert calibration_metrics(1, drift) == {
        "calibration/chip1/drift/drift_rad": 0.1,
        "calibration/chip1/drift/frames": 3.0,
        "calibration/chip1/drift_2/drift_rad": 0.1,
        "calibration/chip1/drift_2/frames": 3.0,
    }
