"""B1 (docs/performance.md): one FFM training step, ours against torch autograd and the FFT floor.

One step = data pass + error pass + phase gradients for one batch, complex64. Contenders, all
in one process at the same padded FFT size, interleaved step by step (the order rotates every
repetition, so a load burst from another user of the machine hits every contender alike).
The step users run comes first: a ``SimulatedChip`` with its keyed camera noise.

- ``ours-noisy``: :func:`optics.core.ffm.forward_only_step` on a ``SimulatedChip`` (seed 1) with its
  default noisy cameras: every tap of both passes measured holographically (Gaussian
  quadrature noise, ADC over the frame's peak, residual reference phase) and the detector
  intensity detected (Poisson shot noise, read noise, ADC), all keyed by (seed, round, pass,
  sample, tap).
- ``ours-chip-off``: the same chip (same seed, so the same hidden imperfections, same phases)
  with ``measurement=MeasurementSpec.off()``: the step without camera noise.
  ``noisy/chip-off`` = chip-off time / noisy time (1: the noise costs nothing).
- ``torch-noisy``: the ``torch`` step (below) plus the camera noise one noisy chip step draws
  and applies (the same counts and operations: :meth:`torch_net.TorchNet.noisy_step`), drawn
  with torch's own generator (``torch.Generator``, fixed seed) on the same device, applied to
  torch's activations after ``backward``. ``noisy/torch-noisy`` = torch-noisy time / ours-noisy time.
- ``noise-floor``: not a step: one step's camera draws alone, in bulk with our keyed
  generator (:func:`optics.core.measurement.keyed_normals` for the 2L + 1 holographic taps
  (B, n, n, 2), the read noise (B, n, n) and the two reference phases (B,),
  :func:`~optics.core.measurement.keyed_poisson` for the shot noise of the detected intensity
  (B, n, n), its means from the noisy chip's true detector intensity), called with the
  benchmark's backend, whose workers (``--threads``) draw their rows side by side. Reported
  as samples/s and as a fraction of the ``ours-noisy`` step time (``noise-floor/noisy``).
- ``ours``: :func:`optics.core.ffm.forward_only_step` on a noise-free :class:`optics.DigitalTwin`.
  The twin is the ideal network torch also computes (exact free space, perfect SLM, no
  camera noise), so the two contenders do the same arithmetic and their gradients must agree
  (checked on the first batch, recorded as ``grad_rel_err``).
- ``ours-cached``: the same with the chip's input-plane cache (``P_0 x`` reused when a batch
  comes back, as in every epoch after the first): ``4L`` FFTs instead of ``4L + 2``.
- ``ours-lean``: the memory-lean mode (``samples_per_pass`` = a quarter of the batch): the same
  gradient with a quarter of the taps held at once.
- ``torch``: torch autograd of the same network (same band-limited transfer function,
  padding, detectors, loss), ``loss.backward()`` for the phase gradients.
- FFT floor: ``(4L + 2)`` x the median time of one batched in-place 2-D FFT of
  (batch, n_pad, n_pad) complex64, for our FFT (pyFFTW / cuFFT), torch's (MKL / cuFFT) and, on
  the CPU, ours as the step runs it (blocks of samples, one single-threaded plan per worker);
  the floor uses the fastest. ``floor_frac = floor time / step time``.

``--contenders`` picks the rows (all by default; the FFT probes always run). Each step gets
a fresh batch (digits; a synthetic stand-in where scikit-learn or SciPy is missing, as on a
bare GPU host); batch preparation is outside the timer. Medians of ``--reps`` timed steps
after ``--warmup``. Peak memory per step (every step row): CPU the rise of a child process's
peak RSS over one step (``/proc/self/clear_refs``), GPU the memory pools (CuPy pool bytes,
``torch.cuda.max_memory_allocated``).

    PYTHONPATH=. .bench/venv/bin/python benchmarks/b1_step.py --device cpu            # ref, mid
    PYTHONPATH=. python3 benchmarks/b1_step.py --device gpu                           # ref, mid, big

Writes benchmarks/results/b1-<host>-<device>.json (per case: ``contenders``, and ``ratios``
``noisy/chip-off``, ``noisy/torch-noisy``, ``noise-floor/noisy``) and b1-<device>.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from b1_contenders import CASES, CONTENDERS, DEFAULT_CASES  # noqa: E402
from b1_report import table  # noqa: E402
from b1_run import run_case  # noqa: E402
from measure import machine  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``--cases`` defaulting to the device's cases)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--cases", nargs="+", choices=list(CASES))
    p.add_argument("--batch", type=int, help="override every case's batch")
    p.add_argument("--reps", type=int, default=12, help="timed steps per contender")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (FFTW and torch)")
    p.add_argument("--planner", default="measure", choices=["estimate", "measure"])
    p.add_argument("--default-malloc", action="store_true", help="glibc's default malloc (see keep_freed_memory)")
    p.add_argument(
        "--cache-batches", type=int, default=4, help="distinct batches cycled through (ours-cached holds them all)"
    )
    p.add_argument(
        "--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS), help="rows to run (default: all)"
    )
    p.add_argument("--noisy", action="store_true", help=argparse.SUPPRESS)  # no-op: the noisy rows are default
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.cases = args.cases or DEFAULT_CASES[args.device]
    if args.device == "cpu" and "big" in args.cases and not args.batch:
        p.error("big is a GPU case; give --batch to run it on the CPU")
    return args


def frameworks(args):
    """``(torch, cupy)``: torch unless ``--no-torch`` (None where not importable), CuPy on the GPU."""
    torch = cp = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch not importable here: torch rows skipped (bash benchmarks/setup_bench_env.sh)")
    if torch is not None and args.device == "cpu":
        torch.set_num_threads(args.threads)
    if args.device == "gpu":
        import cupy as cp
    return torch, cp


def cpu_peak_memory(argv: list[str]) -> dict:
    """``{case: {contender: MB}}`` from ``b1_step.py --memory-only`` in a child process."""
    import subprocess

    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *argv, "--memory-only"],
        capture_output=True,
        text=True,
        env=dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 20)),
    )
    if out.returncode != 0:
        print("peak-memory run failed:", out.stderr[-1000:])
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def write(result: dict, args) -> None:
    """benchmarks/results/b1-<host>-<device>.json (the result) and b1-<device>.md (the table); print the table."""
    md = table(result)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"b1-{platform.node()}-{args.device}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, f"b1-{args.device}.md"), "w") as f:
        f.write(md + "\n")
    print("\n" + md + f"\n\nwrote {path}")


def main(argv=None) -> dict:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch, cp = frameworks(args)
    result = {
        "benchmark": "B1 one FFM training step",
        "device": args.device,
        "threads": args.threads,
        "planner": args.planner,
        "malloc": {k: os.environ.get(k) for k in KEEP_FREED},
        "machine": machine(args.device, torch, cp),
        "args": vars(args),
        "cases": [],
    }
    if args.memory_only:
        print(json.dumps({case: run_case(case, args, torch, cp)["peak_step_mb"] for case in args.cases}))
        return {}
    for case in args.cases:
        result["cases"].append(run_case(case, args, torch, cp))
        print(table(result).splitlines()[-1], flush=True)
    if args.device == "cpu":
        peaks = cpu_peak_memory(raw_argv)
        for r in result["cases"]:
            for k, v in peaks.get(r["case"], {}).items():
                r["contenders"][k]["peak_step_mb"] = v
    write(result, args)
    return result


#: glibc malloc told to keep freed memory: big arrays come from the heap again instead of fresh
#: mmap'ed pages the kernel must zero on first touch (``--default-malloc`` turns this off)
KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def keep_freed_memory(argv: list[str]) -> None:
    """Re-run this process under :data:`KEEP_FREED` (Linux, once). Without it each step's new
    100 MB arrays are fresh pages, and how often a contender pays for zeroing them depends on
    what ran before it: measured on the 2-core machine, the torch rows ran up to 2.3x slower
    and ours-noisy every third step 1.6x slower, so interleaving no longer treated them alike."""
    if sys.platform != "linux" or "--default-malloc" in argv or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], {**os.environ, **KEEP_FREED})


if __name__ == "__main__":
    keep_freed_memory(sys.argv[1:])
    main()
