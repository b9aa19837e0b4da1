"""Shared FFTW wisdom: measured plans written to a file and reused by other processes, so every
process computes with the same algorithm (bitwise-identical results)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pyfftw = pytest.importorskip("pyfftw")

from optics.core.fftw_wisdom import ENV, planned, wisdom_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def _plan(a, *extra):
    return pyfftw.FFTW(a, a, axes=(-2, -1), flags=("FFTW_MEASURE", "FFTW_DESTROY_INPUT") + extra)


def test_a_measured_plan_is_replanned_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "wisdom.json"
    monkeypatch.setenv(ENV, str(path))
    a = pyfftw.empty_aligned((1, 40, 44), dtype=np.complex64)
    pyfftw.forget_wisdom()
    planned(lambda: _plan(a))
    assert json.loads(path.read_text())  # written
    pyfftw.forget_wisdom()
    with pytest.raises(RuntimeError):
        _plan(a, "FFTW_WISDOM_ONLY")  # nothing in memory: FFTW would have to measure
    planned(lambda: _plan(a, "FFTW_WISDOM_ONLY"))  # planned from the file alone


def test_sharing_off_and_a_damaged_file(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    assert wisdom_path() is None
    a = pyfftw.empty_aligned((1, 36, 36), dtype=np.complex64)
    planned(lambda: _plan(a))
    path = tmp_path / "w.json"
    path.write_text("{not json")
    monkeypatch.setenv(ENV, str(path))
    planned(lambda: _plan(a))  # a damaged file is measured over and rewritten
    assert isinstance(json.loads(path.read_text()), list)
    monkeypatch.delenv(ENV)
    assert wisdom_path().startswith(os.path.expanduser("~"))


STEP = """
import sys, numpy as np
from optics import DigitalTwin, Geometry, Objective, forward_only_step, get_backend
g = Geometry(n=60, pitch=8e-6, wavelength=532e-9, distance=0.02, n_layers=2, n_classes=4, detector_px=8, object_px=30)
tw = DigitalTwin(g, get_backend("numpy", "complex64", fft_threads=2, fft_planner="measure"))
rng = np.random.default_rng(0)
tw.program(rng.uniform(0, 6.3, (2, 60, 60)))
x = rng.uniform(0, 1, (4, 60, 60)).astype(np.float32)
np.save(sys.argv[1], forward_only_step(tw, x, np.arange(4), Objective(), 0, range(4)).grad_phase)
"""


def test_two_processes_compute_bitwise_the_same_step(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{ENV: str(tmp_path / "wisdom.json")})
    for name in ("a.npy", "b.npy"):
        subprocess.run([sys.executable, "-c", STEP, str(tmp_path / name)], env=env, check=True, timeout=300)
    assert (tmp_path / "wisdom.json").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), np.load(tmp_path / "a.npy"))
