"""The benchmark scripts run (their numbers are measured by running them, not here)."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def test_chip_processes_benchmark_runs_on_cpu(tmp_path):
    """The script benchmarks/gpu.sh runs on a GPU host, exercised here with the NumPy backend."""
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/chip_processes.py",
            "--backend",
            "numpy",
            "--geometry",
            "small",
            "--chips",
            "1",
            "2",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batch",
            "8",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "chip-processes-numpy-small.json").read_text())
    assert [r["chips"] for r in result["rows"]] == [1, 2]
    assert all(r["aggregate_samples_per_s"] > 0 for r in result["rows"])
    assert "bash" in (ROOT / "benchmarks" / "gpu.sh").read_text().splitlines()[0]


def test_b1_step_benchmark_runs_on_cpu(tmp_path):
    """B1 on the CPU, tiny: our step, the cached-input-plane step and the FFT probe (torch where importable)."""
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/b1_step.py",
            "--cases",
            "ref",
            "--batch",
            "2",
            "--reps",
            "1",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--planner",
            "estimate",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = tmp_path.glob("b1-*-cpu.json")
    case = json.loads(path.read_text())["cases"][0]
    assert case["n_pad"] == 264 and case["ffts_per_step"] == 22
    assert case["contenders"]["ours"]["samples_per_s"] > 0
    assert case["contenders"]["ours-cached"]["samples_per_s"] > 0
    assert case["contenders"]["ours-lean"]["samples_per_s"] > 0
    assert "| ref | 264^2 | 2 |" in (tmp_path / "b1-cpu.md").read_text()
