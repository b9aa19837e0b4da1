"""The noise-stream version (``optics.core.measurement.NOISE_STREAM_VERSION``) in checkpoints, the run
and sweep fingerprints and the run's tags; a resume refuses a checkpoint written with other streams.
No Ray: the resume path is :func:`pipeline.run.driver._initial_state`, which runs before Ray starts."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from conftest import compose

from optics.core import measurement
from pipeline.config import load_config
from pipeline.run import checkpoint
from pipeline.run.build import fingerprint, make_plan, run_tags
from pipeline.run.coordinator import init_state
from pipeline.run.driver import _initial_state
from pipeline.sweeps.grid import sweep_fingerprint


@pytest.fixture(scope="module")
def cfg_plan():
    cfg = load_config(compose("debug=smoke", "tracking=none"))
    return cfg, make_plan(cfg, 10)


def _save(path, cfg, plan) -> str:
    state = init_state(plan.groups, plan.optimizer, cfg.trainer.train_amplitude, [s.index for s in plan.chips])
    checkpoint.save(str(path), state, None, fingerprint(cfg))
    return str(path)


def _rewrite_meta(path: str, edit) -> None:
    """Tamper with a checkpoint's meta and write a matching .sha256, as a hand-edited file would be."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    edit(meta)
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(path + ".sha256", "w") as f:
        f.write(digest + "\n")


def _resume(cfg, plan, path: str):
    return _initial_state(dataclasses.replace(cfg, resume=path), plan, tracker=None)


def _message(written: int, path: str) -> str:
    running = measurement.NOISE_STREAM_VERSION
    return (
        f"resume={path} was written with noise streams v{written}; this version draws camera noise with "
        f"v{running}, so the run cannot continue bit for bit: start it again without resume (or check out "
        "the version that wrote it)"
    )


def test_checkpoint_round_trips_the_noise_stream_version(tmp_path, cfg_plan):
    path = _save(tmp_path / "ckpt.npz", *cfg_plan)
    _, meta = checkpoint.load(path)
    assert meta["noise_streams"] == measurement.NOISE_STREAM_VERSION == checkpoint.noise_streams(meta)


def test_a_checkpoint_of_the_running_streams_resumes(tmp_path, cfg_plan):
    cfg, plan = cfg_plan
    state, run_id = _resume(cfg, plan, _save(tmp_path / "ckpt.npz", cfg, plan))
    assert run_id is None and sorted(state.params) == sorted(plan.groups)


def test_resume_refuses_a_checkpoint_of_other_streams_in_one_line(tmp_path, cfg_plan, monkeypatch):
    """Written with v1 (its fingerprint then differs too): the noise streams are named, not the config."""
    cfg, plan = cfg_plan
    with monkeypatch.context() as m:
        m.setattr(measurement, "NOISE_STREAM_VERSION", 1)
        path = _save(tmp_path / "ckpt.npz", cfg, plan)
    assert checkpoint.load(path)[1]["noise_streams"] == 1
    with pytest.raises(checkpoint.CheckpointError) as info:
        _resume(cfg, plan, path)
    assert str(info.value) == _message(1, path)
    assert "noise streams" in str(info.value) and "\n" not in str(info.value)


def test_a_checkpoint_without_the_field_counts_as_version_1(tmp_path, cfg_plan):
    """Written before checkpoints carried the version; its config fingerprint still matches."""
    cfg, plan = cfg_plan
    path = _save(tmp_path / "ckpt.npz", cfg, plan)
    _rewrite_meta(path, lambda meta: meta.pop("noise_streams"))
    _, meta = checkpoint.load(path)  # intact: only resuming it is refused
    assert "noise_streams" not in meta and checkpoint.noise_streams(meta) == 1
    with pytest.raises(checkpoint.CheckpointError, match="noise streams v1") as info:
        _resume(cfg, plan, path)
    assert str(info.value) == _message(1, path)


def test_a_later_version_is_refused_too(tmp_path, cfg_plan):
    cfg, plan = cfg_plan
    path = _save(tmp_path / "ckpt.npz", cfg, plan)
    later = measurement.NOISE_STREAM_VERSION + 1
    _rewrite_meta(path, lambda meta: meta.update(noise_streams=later))
    with pytest.raises(checkpoint.CheckpointError) as info:
        _resume(cfg, plan, path)
    assert str(info.value) == _message(later, path)


def test_the_run_fingerprint_carries_the_version(cfg_plan, monkeypatch):
    cfg, _ = cfg_plan
    now = fingerprint(cfg)
    monkeypatch.setattr(measurement, "NOISE_STREAM_VERSION", 1)
    old = fingerprint(cfg)
    assert old != now and len(old) == len(now) == 16 and int(old, 16) >= 0


def test_the_sweep_fingerprint_carries_the_version(monkeypatch):
    base = {"seed": 0, "chip": {"level": 1}, "sweep": {"name": "s", "axes": {}, "root": "/a", "max_parallel": 2}}
    now = sweep_fingerprint(base)
    assert sweep_fingerprint(base | {"sweep": base["sweep"] | {"root": "/b"}}) == now  # paths still left out
    monkeypatch.setattr(measurement, "NOISE_STREAM_VERSION", 1)
    old = sweep_fingerprint(base)
    assert old != now and len(old) == len(now) == 16


def test_the_run_is_tagged_with_the_version(cfg_plan, monkeypatch):
    cfg, _ = cfg_plan
    assert run_tags(cfg)["noise_streams"] == str(measurement.NOISE_STREAM_VERSION)
    monkeypatch.setattr(measurement, "NOISE_STREAM_VERSION", 7)
    assert run_tags(cfg)["noise_streams"] == "7"
