"""B3 (docs/performance.md): data-parallel scaling of ffm-train rounds across chips.

Each chip is one Ray actor given one core (chip.num_cpus=1, one FFT thread); the batch grows
with the chip count (weak scaling: the same per-chip shard). Measures, per chip count, the
median over rounds (after two warm-up rounds) of samples/s, round time, slowest chip time
and coordinator overhead ``(round - slowest chip) / round``; efficiency is
``throughput(K) / (K * throughput(1))``. Writes benchmarks/results/scaling-<topology>-<chip>.json and
prints a markdown table.

    .venv/bin/python benchmarks/scaling.py [--chips 1 2] [--rounds 20] [--geometry reference]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
from common import add_efficiency, report

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def run(k: int, rounds: int, shard: int, chip: str, topology: str, workdir: str) -> dict:
    from conftest import compose  # the same composition ffm-train uses
    from mlflow.tracking import MlflowClient

    from pipeline import train

    uri = f"sqlite:///{workdir}/mlflow.db"
    overrides = [
        f"chip={chip}",
        f"tracking.uri='{uri}'",
        "tracking.log_images=false",
        f"topology={topology}",
        f"topology.n_chips={k}",
        f"topology.chip_seeds={list(range(1, k + 1))}",
        "chip.num_cpus=1",
        "chip.fft_threads=1",
        f"trainer.batch_size={shard * k}",
        f"trainer.max_rounds={rounds}",
        "trainer.epochs=1",
        "trainer.fidelity_every=0",
        "trainer.eval_batch_size=512",
        f"output_dir={workdir}/k{k}",
    ]
    t0 = time.perf_counter()
    summary = train(compose(*overrides))
    wall = time.perf_counter() - t0
    client = MlflowClient(uri)
    keys = ["samples_per_s", "round_s", "slowest_chip_s", "overhead_frac"] + (
        ["bubble_frac"] if topology == "pipeline" else []
    )
    med = {}
    for key in keys:
        hist = sorted(client.get_metric_history(summary["run_id"], f"round/{key}"), key=lambda m: m.step)
        med[key] = float(np.median([m.value for m in hist[2:]]))  # two warm-up rounds dropped
    return {"chips": k, "topology": topology, "rounds": rounds, "wall_s": wall, **med}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--chips", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--shard", type=int, default=16, help="samples per chip per round")
    p.add_argument("--chip", default="diffractive", help="chip config (diffractive = reference geometry)")
    p.add_argument("--topology", default="data_parallel")
    args = p.parse_args()
    import ray

    ray.init(num_cpus=max(args.chips), include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    import tempfile

    work = tempfile.mkdtemp(prefix="ffm-scaling-")
    rows = [run(k, args.rounds, args.shard, args.chip, args.topology, work) for k in args.chips]
    add_efficiency(rows, "samples_per_s")
    out = {
        "benchmark": "B3 data-parallel scaling",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ray": ray.__version__,
        "args": vars(args),
        "rows": rows,
    }
    path = os.path.join(os.path.dirname(__file__), "results", f"scaling-{args.topology}-{args.chip}.json")
    report(
        path,
        out,
        f"{out['cpu']}, {out['cores']} cores, {args.chip} chip, {args.shard} samples per chip per round",
        ["chips", "samples/s", "efficiency", "round (s)", "slowest chip (s)", "coordinator overhead"],
        lambda r: [
            str(r["chips"]),
            f"{r['samples_per_s']:.1f}",
            f"{r['efficiency']:.2f}",
            f"{r['round_s']:.3f}",
            f"{r['slowest_chip_s']:.3f}",
            f"{100 * r['overhead_frac']:.1f} %",
        ],
    )


if __name__ == "__main__":
    main()
