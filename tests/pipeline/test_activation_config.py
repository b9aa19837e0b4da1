"""chip.activation: built into every chip and twin of a reload chip, refused in one line elsewhere."""

import numpy as np
import pytest
from conftest import compose

from optics.core.activations import Activation
from optics.core.backend import get_backend
from pipeline import chips
from pipeline.config import ConfigError, load_config
from pipeline.run.build import make_plan

RELOAD = ("chip=diffractive_small", "+chip.measurement.model=reload", "topology=single")


def test_reload_chip_and_its_twin_carry_the_activation():
    cfg = load_config(compose(*RELOAD, "chip.activation=kerr", "chip.activation_intensity=10"))
    spec = make_plan(cfg, 10).chips[0]
    assert spec.activation == Activation("kerr", 10.0 / 64**2)
    chip, twin = chips.system_of(spec).make_chips(spec, lambda: get_backend("numpy", "complex64"))
    assert chip.activation == twin.activation == spec.activation
    assert chip.describe()["activation"] == "kerr"


def test_rig_sim_takes_an_activation():
    cfg = load_config(compose("chip=rig_sim", "topology=single", "chip.activation=saturable_phase"))
    assert make_plan(cfg, 10).chips[0].activation.kind == "saturable_phase"


def test_none_leaves_the_specs_alone():
    spec = make_plan(load_config(compose(*RELOAD)), 10).chips[0]
    assert spec.activation is None


@pytest.mark.parametrize(
    "overrides,match",
    [
        (("chip.activation=kerr",), "chip.activation=kerr needs measured layers to act between; chip.measurement"),
        (("chip=mzi", "chip.activation=kerr"), "chip.activation=kerr needs measured layers .* chip=mzi has not"),
        (RELOAD + ("chip.activation=relu",), "chip.activation must be one of none, saturable_phase, kerr"),
        (RELOAD + ("chip.activation_intensity=0",), "chip.activation_intensity must be a finite number > 0"),
        (
            ("chip=diffractive_small", "+chip.measurement.model=reload", "topology=pipeline", "chip.activation=kerr"),
            "chip.activation=kerr acts inside one chip; topology=pipeline",
        ),
    ],
)
def test_refused_in_one_line_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match) as e:
        make_plan(load_config(compose(*overrides)), 10)
    assert "\n" not in str(e.value)


def test_activation_off_changes_no_chip():
    """The default builds exactly the chips it built before the key existed (no activation object)."""
    spec = make_plan(load_config(compose(*RELOAD)), 10).chips[0]
    chip, twin = chips.system_of(spec).make_chips(spec, lambda: get_backend("numpy", "complex64"))
    assert chip.activation is None and twin.activation is None and "activation" not in chip.describe()
    assert np.isfinite(chip.true_data_pass(np.ones((1, 64, 64))).intensity).all()
