"""Cost of experiment=xue2024_deep on this machine: one FFM step at the paper's full geometry.

Times ``forward_only_step`` (data pass, error pass, gradients, per-sample rescale, level-1 camera
noise) on a level-1 SimulatedChip of ``Geometry.xue2024()`` (8 x 400 x 400 phases, 800 x 800
grid, complex64, NumPy/FFTW) for a few samples, and one hop's propagation, and projects the
paper's training (Xue et al. 2024: 1,000 Fashion-MNIST images per class, 10 classes, 200 epochs,
batch 10; validation and test 100 images each per epoch; a gradient-fidelity check every 10
rounds) from it. Also the reduced experiment's geometry for comparison.

    .venv/bin/python benchmarks/xue2024_cost.py [--samples 4] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from optics.core.backend import get_backend
from optics.core.data import encode_amplitude, load_digits_split
from optics.core.ffm import Objective, forward_only_step
from optics.core.measurement import MeasurementSpec
from optics.diffractive.chip import SimulatedChip
from optics.diffractive.cost import hop_seconds, projected_training
from optics.diffractive.geometry import Geometry
from optics.diffractive.imperfections import HardwareSpec

REDUCED = dict(n=100, n_layers=3, distance=0.02425)


def step_seconds(g: Geometry, samples: int, threads: int, repeats: int) -> dict:
    """Seconds per sample of one FFM step (best of ``repeats`` after a warm-up step)."""
    be = get_backend("numpy", "complex64", threads)
    chip = SimulatedChip(g, HardwareSpec(level=1.0), MeasurementSpec(level=1.0), seed=1, backend=be)
    rng = np.random.default_rng(0)
    chip.program(np.pi + 0.3 * rng.standard_normal(g.phase_shape))
    split = load_digits_split(0)
    x = encode_amplitude(split.train.images[:samples], g.n, g.object_px)
    y = split.train.labels[:samples]
    obj = Objective("scaled_mse", per_sample_grad_max=0.02)
    forward_only_step(chip, x, y, obj, 0, range(samples))  # FFTW plans, workspaces
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        forward_only_step(chip, x, y, obj, r + 1, range(samples))
        best = min(best, time.perf_counter() - t0)
    return {"step_s_per_sample": best / samples, "hop_s": hop_seconds(be, chip.props[1].n_pad, repeats=20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="outputs/benchmarks/xue2024_cost.json")
    a = ap.parse_args()
    rows = {}
    for name, g in (("full", Geometry.xue2024()), ("reduced", Geometry.xue2024(**REDUCED))):
        m = step_seconds(g, a.samples, a.threads, a.repeats)
        m["per_hop_factor"] = m["step_s_per_sample"] / ((2 * g.n_layers + 1) * m["hop_s"])
        m["projection"] = projected_training(g, m["step_s_per_sample"])
        rows[name] = m
        print(f"{name}: {json.dumps(m, indent=1)}")
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(),
        "samples": a.samples,
        "fft_threads": a.threads,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
