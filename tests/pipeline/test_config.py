"""Every config group composes and builds; bad values get one line naming the key."""

import pathlib

import pytest
from conftest import CONF_DIR, compose

from pipeline.config import ConfigError, load_config
from pipeline.run.build import make_plan

GROUPS = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in pathlib.Path(CONF_DIR).iterdir() if p.is_dir()}


def test_groups_exist():
    assert set(GROUPS) >= {"chip", "task", "trainer", "topology", "tracking", "cluster", "experiment", "debug"}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_and_builds(group, option):
    extra = {("task", "idx"): ["task.data_dir=/tmp"], ("task", "iris"): ["chip=mzi"]}.get((group, option), [])
    cfg = load_config(compose(f"{group}={option}", *extra))
    if group != "task":
        plan = make_plan(cfg, 3 if cfg.task.name == "iris" else 10)
        assert len(plan.chips) == cfg.topology.n_chips


def test_default_is_two_chips_data_parallel_ffm_mlflow():
    cfg = load_config(compose())
    assert (cfg.trainer.kind, cfg.topology.kind, cfg.topology.n_chips, cfg.tracking.kind, cfg.chip.geometry) == (
        "ffm",
        "data_parallel",
        2,
        "mlflow",
        "reference",
    )
    plan = make_plan(cfg, 10)
    assert plan.chips[0].seed != plan.chips[1].seed and plan.train_on == "chip"


@pytest.mark.parametrize(
    "override,match",
    [
        ("trainer.lr=-1", "trainer.lr must be a finite number > 0, got -1"),
        ("trainer.kind=adam", "trainer.kind must be one of ffm, pat, insilico, ideal"),
        ("trainer=pat topology=pipeline", "trainer.kind=pat runs each chip's backward pass through its twin"),
        ("chip.backend=jax", "chip.backend must be one of numpy, cupy"),
        ("trainer.epochs=two", "trainer.epochs must be of type int"),
        ("+trainer.lrr=0.1", "unknown key trainer.lrr"),
        ("chip.level=-0.5", "chip.level must be a finite number >= 0"),
        ("topology.n_chips=3", "topology.chip_seeds has 2 seeds for 3 chips"),
        (
            "+chip.hardware.phase_scren_rad=0.1",
            r"chip.hardware: unknown HardwareSpec option\(s\) \['phase_scren_rad'\]",
        ),
        ("chip.n=4", "chip: n must be >= 8 pixels"),
        ("cluster.on_chip_failure=ignore", "cluster.on_chip_failure must be one of fail, drop"),
        ("chip.samples_per_pass=0", "chip.samples_per_pass must be"),
        ("chip.samples_per_pass=4 topology=pipeline", "chip.samples_per_pass does not apply to topology=pipeline"),
    ],
)
def test_bad_values_one_line(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        cfg = load_config(compose(*override.split()))
        make_plan(cfg, 10)
    assert "\n" not in str(e.value)


def test_conf_defaults_are_the_dataclass_defaults():
    """One source of truth: what conf/ composes by default is exactly the dataclasses' defaults."""
    from pipeline.config import RunConfig

    assert load_config(compose()) == RunConfig()


@pytest.mark.parametrize(
    "override,key", [("trainer.epochs=two", "trainer.epochs"), ("topology.n_chips=1.5", "topology.n_chips")]
)
def test_typed_composition_refuses_wrong_types_as_one_line(override, key):
    """ffm-train composes the ConfigStore root: a value of the wrong type fails composition, in one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pipeline.config import TYPED_ROOT, register_schemas
    from pipeline.errors import explain

    register_schemas()
    with pytest.raises(Exception) as e, initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        hydra_compose(TYPED_ROOT, overrides=[override])
    line = explain(e.value)
    assert line.startswith(f"{key}: ") and "\n" not in line


def test_unknown_chip_kind_names_the_known_kinds():
    with pytest.raises(ConfigError, match="chip.kind must be one of diffractive, mzi, rig, rig_sim; got 'laser'"):
        load_config(compose("chip.kind=laser"))
