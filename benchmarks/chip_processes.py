"""Several chip processes sharing one device: aggregate FFM throughput for 1..K chips.

Each chip is a plain process (no Ray: a bare GPU host may have only numpy and CuPy) that
builds a SimulatedChip on the chosen backend and runs FFM steps (data pass, error pass,
gradients; camera noise on) on digits batches. All processes start together after a
barrier; throughput is the sum over chips of samples / s over the timed steps.

    PYTHONPATH=. python3 benchmarks/chip_processes.py --backend cupy --chips 1 2 4 8
    PYTHONPATH=. python3 benchmarks/chip_processes.py --backend numpy --chips 1 2 --geometry small

Writes benchmarks/results/chip-processes-<backend>-<geometry>.json and prints a table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import numpy as np
from common import add_efficiency, report


def _chip(args, rank: int, barrier, queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from optics import Geometry, HardwareSpec, Objective, SimulatedChip, forward_only_step, get_backend
    from optics.core.data import encode_amplitude, load_digits_split

    geometry = Geometry.reference() if args.geometry == "reference" else Geometry.small()
    backend = get_backend(args.backend, "complex64", fft_threads=args.threads)
    chip = SimulatedChip(geometry, HardwareSpec(), seed=rank + 1, backend=backend)
    chip.program(np.full((geometry.n_layers, geometry.n, geometry.n), np.pi))
    split = load_digits_split(0)
    x = encode_amplitude(split.train.images[: args.batch], geometry.n, geometry.object_px)
    y = split.train.labels[: args.batch]
    objective = Objective()
    for step in range(args.warmup):
        forward_only_step(chip, x, y, objective, step, range(args.batch))
    if backend.name == "cupy":
        backend.xp.cuda.Device().synchronize()
    barrier.wait()
    t0 = time.perf_counter()
    for step in range(args.steps):
        forward_only_step(chip, x, y, objective, 1000 + step, range(args.batch))  # gradients come back to host
    queue.put((rank, args.steps * args.batch / (time.perf_counter() - t0)))


def measure(args, k: int) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_chip, args=(args, r, barrier, queue)) for r in range(k)]
    for p in procs:
        p.start()
    rates = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    per_chip = [r for _, r in sorted(rates)]
    return {"chips": k, "aggregate_samples_per_s": float(sum(per_chip)), "per_chip_samples_per_s": per_chip}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="cupy", choices=["numpy", "cupy"])
    p.add_argument("--geometry", default="reference", choices=["reference", "small"])
    p.add_argument("--chips", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="FFT threads per chip (CPU)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    rows = [measure(args, k) for k in args.chips]
    add_efficiency(rows, "aggregate_samples_per_s")
    info = {
        "host": platform.node(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.backend == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info |= {"gpu": props["name"].decode(), "cupy": cupy.__version__}
    path = os.path.join(args.out, f"chip-processes-{args.backend}-{args.geometry}.json")
    report(
        path,
        {"benchmark": "chip processes sharing one device", **info, "args": vars(args), "rows": rows},
        f"{info.get('gpu', info['machine'])}, {args.geometry} chip, batch {args.batch}",
        ["chips", "aggregate samples/s", "per chip", "efficiency"],
        lambda r: [
            str(r["chips"]),
            f"{r['aggregate_samples_per_s']:.1f}",
            f"{np.mean(r['per_chip_samples_per_s']):.1f}",
            f"{r['efficiency']:.2f}",
        ],
    )


if __name__ == "__main__":
    main()
