"""``ffm-train -m``: Hydra's multirun syntax becomes a grid sweep of the parallel runner."""

import pytest
from conftest import CONF_DIR, compose

from pipeline.config import load_config
from pipeline.sweeps.grid import expand
from pipeline.sweeps.multirun import MultirunError, is_multirun, multirun_overrides


def _composed(overrides):
    from pipeline.cli import free_overrides

    return compose(*free_overrides(overrides))


def _sweep(*args):
    converted = multirun_overrides(list(args), CONF_DIR, _composed)
    return converted, load_config(_composed(converted))


def test_swept_keys_become_seeds_trainers_and_axes():
    args = ("-m", "debug=smoke", "trainer.lr=0.05,0.1", "seed=range(1,4)", "trainer=ffm,insilico")
    assert is_multirun(list(args))
    converted, cfg = _sweep(*args)
    assert "debug=smoke" in converted
    assert cfg.sweep.name == "multirun"
    assert cfg.sweep.seeds == [1, 2, 3] and cfg.sweep.trainers == ["ffm", "insilico"]
    assert cfg.sweep.axes == {"trainer.lr": [0.05, 0.1]}
    jobs = expand(cfg.sweep)  # ideal is trained for insilico's masks: once per seed and lr
    assert sum(j.trainer == "ffm" for j in jobs) == sum(j.trainer == "insilico" for j in jobs) == 6


def test_unswept_seed_and_trainer_are_the_runs_own():
    _, cfg = _sweep("-m", "seed=7", "trainer=insilico", "chip.level=choice(0,1.5)")
    assert cfg.sweep.seeds == [7] and cfg.sweep.trainers == ["insilico"]
    assert cfg.sweep.axes == {"chip.level": [0.0, 1.5]}
    _, cfg = _sweep("-m", "chip.level=0,1")
    assert cfg.sweep.seeds == [0] and cfg.sweep.trainers == ["ffm"]


def test_an_experiments_sweep_keeps_its_seeds_trainers_and_axes():
    converted, cfg = _sweep("-m", "experiment=imperfection_sweep", "trainer.lr=0.05,0.1")
    assert not any(c.startswith(("sweep.seeds", "sweep.trainers", "sweep.name")) for c in converted)
    assert cfg.sweep.name == "imperfection_sweep" and cfg.sweep.seeds == [1, 2, 3]
    assert cfg.sweep.axes["trainer.lr"] == [0.05, 0.1] and "chip.level" in cfg.sweep.axes


def test_sweeping_another_config_group_is_refused():
    with pytest.raises(MultirunError, match="config group chip"):
        multirun_overrides(["-m", "chip=diffractive,mzi"], CONF_DIR, _composed)
