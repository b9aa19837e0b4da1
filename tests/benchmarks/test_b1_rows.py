"""B1's noisy rows: ours-noisy beside ours-chip-off, torch-noisy, the noise floor, and the table leading with them."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import b1_contenders  # noqa: E402
import b1_report  # noqa: E402

from optics import MeasurementSpec, get_backend  # noqa: E402


def test_noise_floor_draws_what_one_noisy_step_draws(monkeypatch):
    """2L + 1 holographic taps (B, n, n, 2), read noise (B, n, n), two reference phases, shot noise (B, n, n)."""
    g = b1_contenders.geometry("ref")
    batch, drawn = 3, {"normals": 0, "poisson": 0}

    def normals(key, tap, shape, backend):
        drawn["normals"] += len(key.samples) * int(np.prod(shape))
        return np.zeros((len(key.samples), *shape), np.float32)

    def poisson(key, tap, lam, backend):
        assert lam.dtype == np.float64 and lam.shape == (batch, g.n, g.n)
        drawn["poisson"] += lam.size
        return np.zeros(lam.shape, np.float32)

    monkeypatch.setattr(b1_contenders, "keyed_normals", normals)
    monkeypatch.setattr(b1_contenders, "keyed_poisson", poisson)
    lam = np.ones((batch, g.n, g.n))
    b1_contenders.noise_floor_step(g, batch, lam, get_backend("numpy", "complex64"), seed=1)(7)
    assert drawn == b1_contenders.noise_draws(g, batch)
    assert drawn["normals"] == batch * ((2 * 5 + 1) * 200 * 200 * 2 + 200 * 200 + 2)


def _result(**rows):
    """A B1 result with one case holding ``rows`` (name: median seconds)."""
    contenders = {k: {"median_s": s, "samples_per_s": 8 / s, "floor_frac": 0.5} for k, s in rows.items()}
    for k in contenders:
        if k.startswith("ours") and "torch" in rows:
            contenders[k]["vs_torch"] = rows["torch"] / rows[k]
    noisy = rows.get("ours-noisy")
    ratios = {
        "noisy/chip-off": rows["ours-chip-off"] / noisy if noisy and "ours-chip-off" in rows else None,
        "noisy/torch-noisy": rows["torch-noisy"] / noisy if noisy and "torch-noisy" in rows else None,
        "noise-floor/noisy": rows["noise-floor"] / noisy if noisy and "noise-floor" in rows else None,
    }
    case = {"case": "mid", "n_pad": 256, "batch": 8, "fft_floor_s": 0.02, "loadavg_1min": {"median": 1.0}}
    return {
        "device": "cpu",
        "threads": 2,
        "planner": "measure",
        "machine": {"cpu": "test", "date": "today"},
        "cases": [case | {"contenders": contenders, "ratios": ratios}],
    }


def test_table_leads_with_the_noisy_step():
    md = b1_report.table(
        _result(**{"ours-noisy": 0.1, "ours-chip-off": 0.08, "noise-floor": 0.02, "torch-noisy": 0.3, "ours": 0.07})
    )
    header, rule, row = md.splitlines()[2:5]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[3:9] == [
        "ours-noisy samples/s",
        "ours-chip-off samples/s",
        "noisy / chip-off",
        "noise floor samples/s (of noisy step)",
        "torch-noisy samples/s",
        "ours-noisy / torch-noisy",
    ]
    assert columns[9] == "ours samples/s"
    assert rule.count("---") == len(columns)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(columns)
    assert cells[:9] == ["mid", "256^2", "8", "80.0", "100.0", "0.80", "400.0 (0.20)", "26.7", "3.00x"]
    assert cells[10] == "-"  # no torch row: a dash, not an error


def test_table_without_the_noisy_rows():
    """``--contenders ours torch``: the noisy columns are dashes."""
    row = b1_report.table(_result(ours=0.07, torch=0.1)).splitlines()[4]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:9] == ["-", "-", "-", "- (-)", "-", "-"]
    assert cells[9:12] == ["114.3", "80.0", "1.43x"]


def test_b1_noisy_rows_run_on_cpu(tmp_path):
    """The noisy rows by name, tiny: timed, ratios recorded, peak memory for the step rows (not the floor)."""
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
            "--contenders",
            "ours-noisy",
            "ours-chip-off",
            "noise-floor",
            "torch-noisy",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = tmp_path.glob("b1-*-cpu.json")
    case = json.loads(path.read_text())["cases"][0]
    rows = case["contenders"]
    assert {"ours-noisy", "ours-chip-off", "noise-floor"} <= set(rows) and "ours" not in rows
    assert all(rows[k]["samples_per_s"] > 0 for k in ("ours-noisy", "ours-chip-off", "noise-floor"))
    assert case["ratios"]["noisy/chip-off"] > 0 and case["ratios"]["noise-floor/noisy"] > 0
    assert ("torch-noisy" in rows) == (case["ratios"]["noisy/torch-noisy"] is not None)
    assert case["noise_draws_per_step"] == b1_contenders.noise_draws(b1_contenders.geometry("ref"), 2)
    if rows["ours-noisy"].get("peak_step_mb") is not None:  # where the kernel lets the peak be reset
        assert "peak_step_mb" in rows["ours-chip-off"] and "peak_step_mb" not in rows["noise-floor"]
    assert "| ref | 264^2 | 2 |" in (tmp_path / "b1-cpu.md").read_text()


def test_torch_noisy_step_adds_noise_not_gradient_changes():
    """torch-noisy: torch's generator draws the noise after backward; the gradient is the clean one."""
    torch = pytest.importorskip("torch")
    from torch_net import TorchNet

    g = b1_contenders.geometry("mid")
    phases = np.random.default_rng(1).uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    masks = np.random.default_rng(2).random((g.n * g.n, 10)).astype(np.float32)
    net = TorchNet(torch, g, g.n, phases, masks, 0.1, "cpu")
    with pytest.raises(RuntimeError):
        net.noisy_step(torch.zeros(1, g.n, g.n, dtype=torch.complex64), torch.zeros(1, dtype=torch.int64))
    net.set_noise(MeasurementSpec(), seed=1)
    x = torch.rand(2, g.n, g.n).to(torch.complex64)
    y = torch.tensor([1, 3])
    net.step(x, y)
    clean = net.phi.grad.clone()
    state = net.gen.get_state().clone()
    net.noisy_step(x, y)
    assert torch.equal(net.phi.grad, clean)
    assert not torch.equal(net.gen.get_state(), state)
    detected = net._detect(torch.full((2, g.n, g.n), 1e-4))
    assert detected.shape == (2, g.n, g.n) and float(detected.min()) >= 0
    with pytest.raises(ValueError):
        net.set_noise(MeasurementSpec.off())
