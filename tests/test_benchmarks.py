"""The benchmark scripts run (their numbers are measured by running them, not here)."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_chip_processes_benchmark_runs_on_cpu(tmp_path):
    """The script benchmarks/gpu.sh runs on a GPU host, exercised here with the NumPy backend."""
    out = subprocess.run([sys.executable, "benchmarks/chip_processes.py", "--backend", "numpy", "--geometry",
                          "small", "--chips", "1", "2", "--steps", "2", "--warmup", "1", "--batch", "8",
                          "--out", str(tmp_path)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "chip-processes-numpy-small.json").read_text())
    assert [r["chips"] for r in result["rows"]] == [1, 2]
    assert all(r["aggregate_samples_per_s"] > 0 for r in result["rows"])
    assert "bash" in (ROOT / "benchmarks" / "gpu.sh").read_text().splitlines()[0]
