"""experiment=xue2024_deep: bad input refused with one line naming the key and the fix, exit code 2,
before any work (no Ray, no MLflow run, no file written): a missing or truncated IDX folder, a grid
that aliases, bad per-class caps, detector layouts and gradient rescales."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import run

import numpy as np
import pytest

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")
PREFIX = "ffm-train: error: "
X = ["experiment=xue2024_deep"]


def _idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file of unsigned bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def truncated_idx(d: Path) -> None:
    """Four well-formed IDX files (20 images a part), then the training images cut in half."""
    (d / "fmnist").mkdir()
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _idx(d / "fmnist" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (20, 28, 28)))
        _idx(d / "fmnist" / f"{prefix}-labels-idx1-ubyte", np.arange(20) % 10)
    images = d / "fmnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])


TWO = ["topology.n_chips=2", "topology.chip_seeds=[1,2]"]
CASES = {
    "idx_missing": (X + ["task=idx", "task.data_dir={d}/nosuch"], "task.data_dir={d}/nosuch is not a folder", None),
    "idx_truncated": (
        X + ["task=idx", "task.data_dir={d}/fmnist"],
        "train-images-idx3-ubyte: truncated",
        truncated_idx,
    ),
    "grid_aliases": (X + ["chip.pad=50"], "use chip.pad >= 200", None),
    "reduced_grid_aliases": (["experiment=xue2024_deep_reduced", "chip.pad=10"], "use chip.pad >= 50", None),
    "per_class_one_value": (X + ["task.per_class=[1000]"], "task.per_class must be [train, eval]", None),
    "layout_unknown": (X + ["chip.detector_layout=grid"], "chip.detector_layout must be one of rows, xue2024", None),
    "layout_classes": (X + ["topology=width"] + TWO, "detector_layout", None),
    "rescale_zero": (X + ["trainer.per_sample_grad_max=0"], "trainer.per_sample_grad_max must be a finite", None),
    "rescale_pipeline": (X + ["topology=pipeline"] + TWO, "topology=pipeline", None),
    "loss_unknown": (X + ["trainer.loss=l1"], "trainer.loss must be one of cross_entropy, scaled_mse", None),
}


def _snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` (relative path -> sha256). Empty folders are not counted: the CLI
    currently leaves an empty ``outputs/`` behind on every refusal (``debug=smoke`` too)."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*") if p.is_file()}


def _run(name: str, root: Path) -> dict:
    args, _, setup = CASES[name]
    d = root / name
    d.mkdir()
    if setup:
        setup(d)
    before = _snapshot(d)
    argv = [a.replace("{d}", str(d)) for a in args]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{d}/mlflow.db"}
    env.pop("FFM_TRACEBACK", None)
    p = run([BIN, *argv], cwd=d, env=env, capture_output=True, text=True, timeout=180)
    return {"rc": p.returncode, "stderr": p.stderr, "stdout": p.stdout, "before": before, "after": _snapshot(d), "d": d}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("xue2024_inputs")
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CASES, pool.map(lambda n: _run(n, root), CASES)))


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_before_any_work(name, results):
    r = results[name]
    expect = CASES[name][1].replace("{d}", str(r["d"]))
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
    where = f"\nexit {r['rc']}\nstderr:\n{r['stderr'][-3000:]}\nstdout:\n{r['stdout'][-1000:]}"
    assert r["rc"] == 2, where
    assert len(lines) == 1 and lines[0].startswith(PREFIX), where
    assert expect in lines[0], where
    assert "Traceback" not in r["stderr"] + r["stdout"], where
    assert r["after"] == r["before"], f"written: {set(r['after']) ^ set(r['before'])}" + where
