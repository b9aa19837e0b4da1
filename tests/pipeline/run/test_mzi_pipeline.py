"""ffm-train chip=mzi task=iris: an MZI mesh through the same coordinator, sweep runner and MLflow."""

import csv

import pytest
from conftest import compose
from omegaconf import OmegaConf

from pipeline.config import ConfigError, load_config
from pipeline.sweeps.grid import run_sweep


def test_mzi_chip_composes_with_its_own_temperature_and_task_epochs():
    cfg = load_config(compose("chip=mzi", "task=iris"))
    assert (cfg.chip.kind, cfg.task.name, cfg.trainer.temperature, cfg.trainer.epochs) == ("mzi", "iris", 0.05, 30)
    assert load_config(compose("chip=mzi", "task=iris", "trainer.epochs=3")).trainer.epochs == 3


@pytest.mark.parametrize(
    "overrides,match",
    [
        (("task=iris",), "task=iris has 4 features"),
        (("chip=mzi", "task=iris", "topology=pipeline"), "topology=pipeline splits a diffractive chip"),
        (("chip=mzi", "task=iris", "chip.arrangement=triple"), "chip.arrangement must be one of"),
    ],
)
def test_bad_mzi_settings_are_one_line_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(compose(*overrides))


def test_mzi_sweep_ffm_keeps_accuracy_where_insilico_loses_it(ray_cluster, tmp_path):
    raw = OmegaConf.to_container(
        compose(
            "experiment=mzi_sweep",
            "sweep.seeds=[1]",
            "trainer.epochs=20",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"sweep.root={tmp_path}/sweeps",
        ),
        resolve=True,
    )
    raw["sweep"]["axes"] = {"chip.level": [0.0, 2.0]}
    result = run_sweep(load_config(raw))
    assert not result["failed"]
    rows = {(r["trainer"], r["chip.level"]): r for r in csv.DictReader(open(result["report"][0]))}
    acc = {k: float(r["mean"]) for k, r in rows.items()}
    assert acc[("ffm", "0.0")] == acc[("ideal", "0.0")] >= 0.9  # level 0: the chip is its twin
    assert acc[("ffm", "2.0")] >= 0.85
    assert acc[("ffm", "2.0")] - acc[("insilico", "2.0")] >= 0.15
    assert float(rows[("ffm", "2.0")]["fidelity_cosine"]) > 0.95  # double pass: forward-only is exact
