"""A corpus of bad ``ffm-train`` command lines: each is refused with exit code 2 and ONE line
``ffm-train: error: ...`` naming the offending key, with no traceback, and writes nothing
(no MLflow store, no Hydra folder, no output folder; files it reads stay byte-identical).

The cases run as subprocesses, three at a time, once per session (about 1-2 minutes in all);
each case is then one parametrized test that checks its own result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import TimeoutExpired, run

import numpy as np
import pytest

from optics.core.measurement import NOISE_STREAM_VERSION

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")
PREFIX = "ffm-train: error: "
TIMEOUT_S = 120
SEEDS8 = "topology.chip_seeds=[1,2,3,4,5,6,7,8]"
SEEDS9 = "topology.chip_seeds=[1,2,3,4,5,6,7,8,9]"
SMALL = (3, 64, 64)  # debug=smoke: chip=diffractive_small, 3 layers of 64 x 64 px


@dataclass
class Case:
    id: str
    args: list[str]  # "{d}" stands for the case's folder (its cwd)
    expect: str  # a substring of the error line: the offending key / field
    env: dict = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None  # writes the files the case reads into its folder
    within_s: float | None = None  # must fail this fast


# ---- files the cases read ---------------------------------------------------------------------


def _ckpt(d: Path, fingerprint: str = "0" * 16, noise_streams: int | None = NOISE_STREAM_VERSION) -> Path:
    """A small well-formed checkpoint (pipeline/checkpoint.py layout) and its .sha256
    (``noise_streams=None``: without the field, as written before checkpoints carried it)."""
    meta = {
        "round": 1,
        "epoch": 0,
        "position": 1,
        "alive": [0, 1],
        "best_val": -1.0,
        "run_id": None,
        "config": fingerprint,
    }
    if noise_streams is not None:
        meta["noise_streams"] = noise_streams
    phase = np.full(SMALL, np.pi)
    path = d / "ckpt.npz"
    np.savez(
        path,
        meta=np.array(json.dumps(meta)),
        **{"params/shared/phase": phase, "best/shared/phase": phase, "opt/shared/m": 0 * phase},
    )
    (d / "ckpt.npz.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    return path


def truncated_ckpt(d: Path) -> None:
    path = _ckpt(d)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (d / "ckpt.npz.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")


def wrong_sha_ckpt(d: Path) -> None:
    _ckpt(d)
    (d / "ckpt.npz.sha256").write_text("0" * 64 + "\n")


def no_sha_ckpt(d: Path) -> None:
    _ckpt(d)
    (d / "ckpt.npz.sha256").unlink()


def legacy_ckpt(d: Path) -> None:
    _ckpt(d, noise_streams=None)


def masks(**arrays) -> Callable[[Path], None]:
    return lambda d: np.savez(d / "masks.npz", **arrays)


def a_file(d: Path) -> None:
    (d / "afile").write_text("not a folder\n")


def idx_folder(d: Path) -> None:
    (d / "idx").mkdir()
    (d / "idx" / "readme.txt").write_text("no IDX files here\n")


# ---- the corpus -------------------------------------------------------------------------------

S = ["debug=smoke"]
CASES = [
    # values out of range or not finite
    Case("level_huge", S + ["chip.level=1e6"], "chip.level"),
    Case(
        "level_spacing", S + ["chip.level=9", "+chip.hardware.distance_error_m=0.05"], "chip.hardware.distance_error_m"
    ),
    Case(
        "level_spacing_plain",
        S + ["chip.level=9", "chip.hardware.distance_error_m=0.05"],
        "chip.hardware.distance_error_m",
    ),
    Case("hardware_typo", S + ["chip.hardware.distance_eror_m=0.05"], "distance_eror_m"),
    Case("hardware_unknown_knob", S + ["+chip.hardware.lens_error=1"], "lens_error"),
    Case("measurement_negative", S + ["+chip.measurement.photons_per_sample=-5"], "photons_per_sample"),
    Case("distance_huge", S + ["chip.distance=1e9"], "chip.distance"),
    Case("distance_negative", S + ["chip.distance=-1"], "chip.distance"),
    Case("pad_aliases", ["chip=diffractive_small", "chip.pad=0"] + S, "chip.pad"),
    Case("n_huge", S + ["chip.n=100000"], "chip.n"),
    Case("lr_huge", S + ["trainer.lr=1e300"], "trainer.lr"),
    Case("lr_negative", S + ["trainer.lr=-1"], "trainer.lr must be a finite number > 0, got -1"),
    Case("lr_nan", S + ["trainer.lr=nan"], "trainer.lr"),
    Case("lr_empty", S + ["trainer.lr="], "trainer.lr"),
    Case("batch_huge", S + ["trainer.batch_size=100000000"], "trainer.batch_size"),
    Case("batch_zero", S + ["trainer.batch_size=0"], "trainer.batch_size"),
    Case("batch_over_train_set", S + ["trainer.batch_size=5000"], "trainer.batch_size"),
    Case("eval_batch_zero", S + ["trainer.eval_batch_size=0"], "trainer.eval_batch_size"),
    Case("temperature_zero", S + ["trainer.temperature=0"], "trainer.temperature"),
    Case("val_fraction", S + ["task.val_fraction=1.5"], "task.val_fraction"),
    Case("seed_negative", S + ["seed=-1"], "seed"),
    Case("chip_seed_text", S + ["topology.chip_seeds=[a,b]"], "topology.chip_seeds"),
    Case("cluster_cpus_zero", S + ["cluster.num_cpus=0"], "cluster.num_cpus"),
    # types and choices
    Case("epochs_text", S + ["trainer.epochs=two"], "trainer.epochs"),
    Case("n_chips_float", S + ["topology.n_chips=1.5"], "topology.n_chips"),
    Case("kind_laser", S + ["chip.kind=laser"], "chip.kind"),
    Case("optimizer_lbfgs", S + ["trainer.optimizer=lbfgs"], "trainer.optimizer"),
    Case("on_failure_retry", S + ["cluster.on_chip_failure=retry"], "cluster.on_chip_failure"),
    Case("precision", S + ["chip.precision=complex32"], "chip.precision"),
    Case("only_lens", S + ["chip.only=lens"], "chip.only"),
    # Hydra: keys, groups, syntax
    Case("unknown_key", S + ["trainer.foo=1"], "trainer.foo"),
    Case("unknown_top_key", S + ["+foo=1"], "foo"),
    Case("unknown_group_option", S + ["trainer=foo"], "trainer/foo"),
    Case("unknown_experiment", ["experiment=nosuch"], "experiment/nosuch"),
    Case("bad_syntax", S + ["trainer.lr=[1"], "trainer.lr"),
    # relations between keys
    Case("single_two_chips", S + ["topology=single", "topology.n_chips=2"], "topology.n_chips"),
    Case("seeds_short", S + ["topology.n_chips=3"], "topology.chip_seeds"),
    Case("mzi_pipeline", ["chip=mzi", "topology=pipeline"], "topology=pipeline"),
    Case("iris_diffractive", S + ["task=iris"], "task=iris"),
    Case("idx_no_dir", S + ["task=idx"], "task.data_dir"),
    Case("idx_missing_dir", S + ["task=idx", "task.data_dir=/nonexistent"], "task.data_dir"),
    Case("idx_empty_dir", S + ["task=idx", "task.data_dir={d}/idx"], "task.data_dir", setup=idx_folder),
    Case("address_null", S + ["cluster=address", "cluster.address=null"], "cluster.address"),
    Case("address_down", S + ["cluster=address", "cluster.address=127.0.0.1:1"], "cluster.address", within_s=15),
    Case("crash_chip_alone", S + ["debug.crash_chip=0"], "debug.crash_round"),
    Case("crash_points_bad", S + ["debug.crash_points=[bad]"], "debug.crash_points"),
    Case("pipeline_drop", S + ["topology=pipeline", "cluster.on_chip_failure=drop"], "cluster.on_chip_failure"),
    Case("pipeline_stages", S + ["topology=pipeline", "topology.n_chips=9", SEEDS9], "topology.n_chips"),
    Case(
        "width_chips",
        S
        + [
            "topology=width",
            "topology.n_chips=11",
            "chip.num_cpus=0.1",
            "topology.chip_seeds=[1,2,3,4,5,6,7,8,9,10,11]",
        ],
        "topology.n_chips",
    ),
    Case("masks_not_insilico", S + ["trainer.masks_from={d}/x.npz"], "trainer.masks_from"),
    # the chips against this machine and the cluster
    Case("backend_cupy", S + ["chip.backend=cupy"], "chip.backend"),
    Case("more_chips_than_cpus", S + ["topology.n_chips=8", SEEDS8, "cluster.num_cpus=2"], "chip.num_cpus"),
    Case("num_gpus_absent", S + ["chip.num_gpus=1"], "chip.num_gpus"),
    Case("custom_resource", S + ["chip.resources={optical_chip:1}"], "chip.resources.optical_chip"),
    Case("custom_resource_plus", S + ["+chip.resources.optical_chip=1"], "chip.resources.optical_chip"),
    Case("ray_auth_disabled", S, "RAY_AUTH_MODE", env={"RAY_AUTH_MODE": "disabled"}),
    # tracking
    Case("tracking_down", S, "http://127.0.0.1:1", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, within_s=15),
    Case("tracking_uri_typo", S + ["tracking.uri=htp://127.0.0.1:5000"], "tracking"),
    Case("tracking_folder", S, "/nonexistent/dir", env={"MLFLOW_TRACKING_URI": "sqlite:////nonexistent/dir/m.db"}),
    # resume
    Case("resume_missing", S + ["resume=/nonexistent/ckpt.npz"], "resume=/nonexistent/ckpt.npz"),
    Case("resume_truncated", S + ["resume={d}/ckpt.npz"], "ckpt.npz", setup=truncated_ckpt),
    Case("resume_bad_sha", S + ["resume={d}/ckpt.npz"], "checksum", setup=wrong_sha_ckpt),
    Case("resume_no_sha", S + ["resume={d}/ckpt.npz"], "ckpt.npz.sha256", setup=no_sha_ckpt),
    Case("resume_other_config", S + ["resume={d}/ckpt.npz"], "different configuration", setup=_ckpt),
    Case("resume_old_noise_streams", S + ["resume={d}/ckpt.npz"], "noise streams v1", setup=legacy_ckpt),
    Case("resume_unknown_run", S + ["resume=0123456789abcdef0123456789abcdef"], "0123456789abcdef0123456789abcdef"),
    # deployed masks
    Case(
        "masks_flat_key",
        S + ["trainer=insilico", "trainer.masks_from={d}/masks.npz"],
        "trainer.masks_from",
        setup=masks(phase=np.zeros(SMALL)),
    ),
    Case(
        "masks_nan",
        S + ["trainer=insilico", "trainer.masks_from={d}/masks.npz"],
        "trainer.masks_from",
        setup=masks(**{"shared/phase": np.full(SMALL, np.nan)}),
    ),
    Case(
        "masks_shape",
        S + ["trainer=insilico", "trainer.masks_from={d}/masks.npz"],
        "trainer.masks_from",
        setup=masks(**{"shared/phase": np.zeros((2, 8, 8))}),
    ),
    Case("masks_missing", S + ["trainer=insilico", "trainer.masks_from={d}/nope.npz"], "trainer.masks_from"),
    # output folder
    Case("output_under_file", S + ["output_dir={d}/afile/run"], "output_dir", setup=a_file),
    Case("output_under_proc", S + ["output_dir=/proc/ffm-bad-input/run"], "output_dir"),
    # sweeps and studies
    Case("sweep_trainer", ["experiment=imperfection_sweep", "sweep.trainers=[bogus]"], "sweep.trainers"),
    Case("sweep_no_tracking", ["experiment=imperfection_sweep", "tracking=none"], "tracking"),
    Case("sweep_axis_key", ["experiment=imperfection_sweep", "sweep.axes={chip.levle:[0,1]}"], "chip.levle"),
    Case("sweep_resume_word", ["experiment=imperfection_sweep", "sweep.resume=latest"], "sweep.resume"),
    Case("multirun_group", ["-m", "chip=diffractive,mzi"], "chip=diffractive,mzi"),
    # hyperparameter searches: refused before Ray, MLflow or any trial
    Case("search_budget_zero", ["hparams_search=ffm_lr_temperature", "search.trials=0"], "search.trials"),
    Case(
        "search_space_key",
        ["hparams_search=ffm_lr_temperature", "search.space={trainer.lrr:{type:uniform,low:0.1,high:0.2}}"],
        "trainer.lrr",
    ),
    Case(
        "search_empty_range",
        ["hparams_search=ffm_lr_temperature", "search.space={trainer.lr:{type:uniform,low:0.2,high:0.1}}"],
        "trainer.lr",
    ),
    Case(
        "search_refused_value",
        ["hparams_search=ffm_lr_temperature", "search.space={chip.level:{type:uniform,low:0,high:50}}"],
        "chip.level",
    ),
    Case(
        "search_type",
        ["hparams_search=ffm_lr_temperature", "search.space={trainer.lr:{type:normal,low:0.1,high:0.2}}"],
        "trainer.lr",
    ),
    Case(
        "search_too_concurrent",
        ["hparams_search=ffm_lr_temperature", "search.max_concurrent=64", "cluster.num_cpus=2"],
        "search.max_concurrent",
    ),
    Case("search_grace", ["hparams_search=ffm_lr_temperature", "search.grace_epochs=9"], "search.grace_epochs"),
    Case("search_no_tracking", ["hparams_search=ffm_lr_temperature", "tracking=none"], "tracking"),
    Case("study_targets", ["experiment=focusing", "study.focusing.targets=[[999,999]]"], "targets"),
    Case("study_no_seeds", ["experiment=focusing", "study.focusing.seeds=[]"], "study.focusing.seeds"),
    Case(
        "study_method",
        ["experiment=exceptional_point", "study.exceptional_point.method=newton"],
        "study.exceptional_point.method",
    ),
    Case("study_loss", ["experiment=focusing", "study.focusing.loss=l2"], "study.focusing.loss"),
    # a rig (chip=rig): refused before Ray, an MLflow run or any frame; emulated rigs started are stopped
    Case("rig_scheme", ["chip=rig", "rig.scheme=5-step"], "rig.scheme"),
    Case("rig_address_malformed", ["chip=rig", "rig.address=localhost"], "rig.address must be HOST:PORT"),
    Case("rig_unreachable", ["chip=rig", "rig.address=127.0.0.1:1"], "rig.address 127.0.0.1:1"),
    Case("rig_unknown_hardware", ["chip=rig", "rig.hardware.camera=nope"], "no hardware named {'camera': 'nope'}"),
    Case("rig_pitch", ["chip=rig", "rig.emulator.pitch_m=8e-6"], "pitch but the geometry's is 36 um"),
    Case("rig_off_axis", ["chip=rig", "rig.scheme=off-axis"], "rig.scheme=off-axis"),
    Case(
        "rig_camera_too_small",
        ["chip=rig", "rig.camera_oversample=2", "rig.emulator.camera_oversample=1"],
        "rig.camera_oversample",
    ),
    Case("rig_one_address_two_chips", ["chip=rig", "rig.address=127.0.0.1:5025", "topology=data_parallel"], "claim"),
    Case("rig_emulated_remote", ["chip=rig", "cluster=address"], "rig.address=null"),
    Case("rig_keys_on_simulated", S + ["rig.address=127.0.0.1:5025"], "rig.address applies"),
]


# ---- running them -----------------------------------------------------------------------------


def _snapshot(d: Path) -> dict[str, str]:
    """Every file and folder under ``d``: relative path -> sha256 (folders: 'dir')."""
    out = {}
    for p in sorted(d.rglob("*")):
        out[str(p.relative_to(d))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _run_case(case: Case, root: Path) -> dict:
    d = root / case.id
    d.mkdir()
    if case.setup:
        case.setup(d)
    before = _snapshot(d)
    args = [a.replace("{d}", str(d)) for a in case.args]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{d}/mlflow.db", **case.env}
    env.pop("FFM_TRACEBACK", None)
    t0 = time.monotonic()
    try:
        p = run([BIN, *args], cwd=d, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except TimeoutExpired as exc:
        rc, out, err = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
    return {
        "args": args,
        "rc": rc,
        "stdout": out,
        "stderr": err,
        "s": time.monotonic() - t0,
        "before": before,
        "after": _snapshot(d),
        "dir": d,
    }


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip([c.id for c in CASES], pool.map(lambda c: _run_case(c, root), CASES)))
    print(f"\nbad-input corpus: {len(CASES)} cases in {time.monotonic() - t0:.0f} s")
    return done


def test_corpus_is_large_and_unique():
    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, results):
    r = results[case.id]
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
    where = (
        f"\ncommand: ffm-train {' '.join(r['args'])} {case.env or ''}\nexit: {r['rc']} after {r['s']:.1f} s"
        f"\nstderr:\n{r['stderr'][-3000:]}\nstdout:\n{r['stdout'][-1500:]}"
    )
    assert r["rc"] == 2, where
    assert len(lines) == 1 and lines[0].startswith(PREFIX), where
    assert case.expect in lines[0], f"expected {case.expect!r} in the line" + where
    assert "Traceback" not in r["stderr"] + r["stdout"], where
    assert r["after"] == r["before"], f"written or changed: {set(r['after']) ^ set(r['before'])}" + where
    for arg in r["args"]:
        if arg.startswith("output_dir="):
            assert not os.path.exists(arg.split("=", 1)[1]), where
    if case.within_s:  # on top of what a plain config error costs on this (shared, loaded) machine
        startup = sorted(results[c.id]["s"] for c in CASES if c.id.startswith(("lr_", "kind_", "batch_")))
        assert r["s"] < case.within_s + startup[len(startup) // 2], where
