"""B1 (docs/performance.md): one FFM training step, ours against torch autograd and the FFT floor.

One step = data pass + error pass + phase gradients for one batch, complex64. Contenders, all
in one process at the same padded FFT size, interleaved step by step (the order rotates every
repetition, so a load burst from another user of the machine hits every contender alike):

- ``ours``: :func:`optics.core.ffm.forward_only_step` on a noise-free :class:`optics.DigitalTwin`.
  The twin is the ideal network torch also computes (exact free space, perfect SLM, no
  camera noise), so the two contenders do the same arithmetic and their gradients must agree
  (checked on the first batch, recorded as ``grad_rel_err``). A ``SimulatedChip`` adds
  imperfections and keyed camera noise, which is chip emulation, not the step's cost;
  ``--noisy`` adds it as a separate row (``ours-noisy``).
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

Each step gets a fresh batch (digits; a synthetic stand-in where scikit-learn or SciPy is
missing, as on a bare GPU host); batch preparation is outside the timer. Medians of
``--reps`` timed steps after ``--warmup``. Peak memory per step: CPU the rise of the
process's peak RSS over one step (``/proc/self/clear_refs``), GPU the memory pools (CuPy
pool bytes, ``torch.cuda.max_memory_allocated``).

    PYTHONPATH=. .bench/venv/bin/python benchmarks/b1_step.py --device cpu            # ref, mid
    PYTHONPATH=. python3 benchmarks/b1_step.py --device gpu                           # ref, mid, big

Writes benchmarks/results/b1-<host>-<device>.json and b1-<device>.md (the table of ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import warnings

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from measure import Clock, cpu_step_peak_mb, machine  # noqa: E402
from torch_net import TorchNet  # noqa: E402

from optics import DigitalTwin, Geometry, Objective, SimulatedChip, forward_only_step, get_backend  # noqa: E402
from optics.core.propagation import SamplingWarning  # noqa: E402

WAVELENGTH = 532e-9
CASES = {  # the B1 cases of docs/performance.md
    "ref": dict(n=200, pitch=36e-6, distance=0.3, n_layers=5, pad=None, batch={"cpu": 64, "gpu": 64}),
    "mid": dict(n=256, pitch=8e-6, distance=0.05, n_layers=5, pad=0, batch={"cpu": 32, "gpu": 256}),
    "big": dict(n=512, pitch=8e-6, distance=0.05, n_layers=10, pad=0, batch={"gpu": 256}),
}
DEFAULT_CASES = {"cpu": ["ref", "mid"], "gpu": ["ref", "mid", "big"]}
warnings.filterwarnings("ignore", category=SamplingWarning)  # mid and big wrap around by design


def geometry(case: str) -> Geometry:
    """The case's chip (mid and big are unpadded on purpose: kernel benchmarks, not optics)."""
    c = CASES[case]
    return Geometry(
        n=c["n"],
        pitch=c["pitch"],
        wavelength=WAVELENGTH,
        distance=c["distance"],
        n_layers=c["n_layers"],
        n_classes=10,
        detector_px=20,
        object_px=min(96, c["n"]),
        pad=c["pad"],
        force_padding=c["pad"] == 0,
    )


# -- data ----------------------------------------------------------------------------------
def batches(g: Geometry, batch: int, count: int, seed: int = 0):
    """``count`` batches (x (B, n, n) float32 unit power, labels (B,)): digits, or synthetic blobs."""
    try:
        from optics.core.data import encode_amplitude, load_digits_split

        split = load_digits_split(0)
        images, labels, source = split.train.images, split.train.labels, "sklearn digits"
        x_all = encode_amplitude(images[: batch * count] if len(images) >= batch * count else images, g.n, g.object_px)
    except ImportError:  # bare GPU host: no scikit-learn / SciPy
        rng = np.random.default_rng(seed)
        imgs = rng.random((batch * count, 8, 8)) * (rng.random((batch * count, 8, 8)) > 0.5)
        labels = rng.integers(0, 10, batch * count)
        rep = max(1, g.object_px // 8)
        up = np.kron(imgs, np.ones((1, rep, rep)))
        x_all = np.zeros((len(imgs), g.n, g.n), np.float32)
        o = (g.n - up.shape[1]) // 2
        x_all[:, o : o + up.shape[1], o : o + up.shape[2]] = up
        x_all /= np.sqrt((x_all**2).sum(axis=(1, 2), keepdims=True)) + 1e-30
        source = "synthetic 8x8 blobs (no scikit-learn here)"
    out = []
    for i in range(count):
        idx = np.arange(i * batch, (i + 1) * batch) % len(x_all)
        out.append((np.ascontiguousarray(x_all[idx], dtype=np.float32), np.asarray(labels)[idx].astype(np.int64)))
    return out, source


# -- the run ----------------------------------------------------------------------------------
def run_case(case: str, args, torch, cp) -> dict:
    g = geometry(case)
    batch = args.batch or CASES[case]["batch"][args.device]
    backend = get_backend(
        "cupy" if args.device == "gpu" else "numpy", "complex64", fft_threads=args.threads, fft_planner=args.planner
    )
    twin = DigitalTwin(g, backend)
    n_pad = twin.props[-1].n_pad
    phases = np.random.default_rng(1).uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    twin.program(phases)
    cached = DigitalTwin(
        g,
        get_backend(backend.name, "complex64", fft_threads=args.threads, fft_planner=args.planner),
        input_cache=args.cache_batches * batch,
    )
    cached.program(phases)
    n_batches = args.warmup + args.reps
    data, source = batches(g, batch, min(n_batches, args.cache_batches))
    dev_data = [(backend.asarray(x), y) for x, y in data]
    objective = Objective()
    contenders = {}
    rnd = [0]

    def ours(chip, per_pass=None):
        def step(i):
            x, y = dev_data[i % len(dev_data)]
            rnd[0] += 1
            return forward_only_step(chip, x, y, objective, rnd[0], range(batch), per_pass)

        return step

    if "ours" in args.contenders:
        contenders["ours"] = ours(twin)
    if "ours-lean" in args.contenders:  # memory-lean mode: a quarter of the batch per pass
        contenders["ours-lean"] = ours(twin, max(1, batch // 4))
    if "ours-cached" in args.contenders:
        contenders["ours-cached"] = ours(cached)
    if args.noisy:
        chip = SimulatedChip(
            g,
            seed=1,
            backend=get_backend(backend.name, "complex64", fft_threads=args.threads, fft_planner=args.planner),
        )
        chip.program(phases)
        contenders["ours-noisy"] = ours(chip)

    record = {
        "case": case,
        "n": g.n,
        "n_pad": n_pad,
        "pad_per_side": (n_pad - g.n) // 2,
        "batch": batch,
        "layers": g.n_layers,
        "pitch_m": g.pitch,
        "distance_m": g.distance,
        "data": source,
        "ffts_per_step": 4 * g.n_layers + 2,
        "ffts_per_step_cached": 4 * g.n_layers,
    }
    tnet = None
    if torch is not None and "torch" in args.contenders:
        tdev = "cuda" if args.device == "gpu" else "cpu"
        masks = backend.to_numpy(twin.detectors.masks)
        tnet = TorchNet(torch, g, n_pad, phases, masks, objective.temperature, tdev)
        t_data = [
            (torch.as_tensor(x, device=tdev).to(torch.complex64), torch.as_tensor(y, device=tdev)) for x, y in data
        ]
        contenders["torch"] = lambda i: tnet.step(*t_data[i % len(t_data)])
        # the two compute the same gradient (first batch)
        g_ours = forward_only_step(twin, dev_data[0][0], data[0][1], objective, 0, range(batch)).grad_phase
        tnet.step(*t_data[0])
        g_t = tnet.phi.grad.detach().cpu().numpy().astype(np.float64)
        record["grad_rel_err_ours_vs_torch"] = float(np.linalg.norm(g_ours - g_t) / np.linalg.norm(g_t))

    # FFT probes: one batched in-place 2-D FFT of the padded size
    shape = (batch, n_pad, n_pad)
    buf = backend.workspace(shape)
    buf[...] = 1
    contenders["fft-ours"] = lambda i: backend.fft2_(buf)
    if args.device == "cpu":  # the same FFTs as the step runs them: per block, one thread each

        def fft_blocked(i):
            backend.map_blocks(
                lambda block, w: backend.fft2_(backend.workspace((block.stop - block.start, n_pad, n_pad), w)),
                batch,
                n_pad,
            )

        contenders["fft-ours-blocked"] = fft_blocked
    if torch is not None:
        tbuf = torch.ones(shape, dtype=torch.complex64, device="cuda" if args.device == "gpu" else "cpu")
        contenders["fft-torch"] = lambda i: torch.fft.fft2(tbuf)

    names = list(contenders)
    if args.memory_only:  # CPU peak memory, in a process whose large blocks come from mmap
        for name in names:
            if not name.startswith("fft-"):
                contenders[name](0)  # warm: plans and workspaces exist
        return {
            "case": case,
            "peak_step_mb": {
                k: cpu_step_peak_mb(lambda k=k: contenders[k](0)) for k in names if not k.startswith("fft-")
            },
        }
    clock = Clock(args.device, cp, torch)
    times = {k: [] for k in names}
    load = []
    for rep in range(args.warmup + args.reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            dt = clock(lambda name=name, rep=rep: contenders[name](rep))
            if rep >= args.warmup:
                times[name].append(dt)
        if rep >= args.warmup:
            load.append(os.getloadavg()[0])
        if args.verbose:
            print(
                f"  {case} rep {rep}: "
                + ", ".join(f"{n} {times[n][-1] * 1e3:.1f} ms" for n in names if rep >= args.warmup),
                flush=True,
            )

    med = {k: statistics.median(v) for k, v in times.items()}
    res = {k: {"median_s": med[k], "min_s": min(v), "max_s": max(v), "times_s": v} for k, v in times.items()}
    for k in res:
        if not k.startswith("fft-"):
            res[k]["samples_per_s"] = batch / med[k]
    fft_best = min(med[k] for k in med if k.startswith("fft-"))
    record["fft_floor_s"] = fft_best * record["ffts_per_step"]
    record["fft_floor_s_cached"] = fft_best * record["ffts_per_step_cached"]
    record["fft_fields_per_s"] = {k: batch / med[k] for k in med if k.startswith("fft-")}
    for k in res:
        if not k.startswith("fft-"):
            res[k]["floor_frac"] = record["fft_floor_s"] / med[k]
    if "torch" in med:
        for k in res:
            if k.startswith("ours"):
                res[k]["vs_torch"] = med["torch"] / med[k]
    record["loadavg_1min"] = {"min": min(load), "median": statistics.median(load), "max": max(load)}

    # peak memory of one step per contender (untimed)
    mem = {}
    for name in [k for k in names if not k.startswith("fft-")]:
        if args.device == "cpu":
            continue  # measured in a separate process (see cpu_peak_memory)
        if name == "torch":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            contenders[name](0)
            torch.cuda.synchronize()
            mem[name] = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            pool = cp.get_default_memory_pool()
            cp.cuda.Device().synchronize()
            pool.free_all_blocks()
            before = pool.total_bytes()
            contenders[name](0)
            cp.cuda.Device().synchronize()
            mem[name] = (pool.total_bytes() - before) / 2**20
    for k, v in mem.items():
        res[k]["peak_step_mb"] = v
    record["taps_mb"] = 2 * g.n_layers * batch * g.n * g.n * 8 / 2**20
    record["contenders"] = res
    return record


def table(result: dict) -> str:
    dev = result["device"]
    where = result["machine"].get("gpu") or f"{result['machine']['cpu']}, {result['threads']} threads"
    lines = [
        f"B1, one FFM step (data pass + error pass + phase gradients), complex64, {dev.upper()}: {where}; "
        f"{result['machine']['date']}; FFT planner {result['planner']}",
        "",
        "| case | FFT size | batch | ours samples/s | torch autograd samples/s | ours / torch | "
        "ours, cached input plane | FFT floor samples/s | ours / floor | torch / floor | "
        "peak MB (ours / torch) | ours memory-lean (B/4 per pass): samples/s, peak MB | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["cases"]:
        c = r["contenders"]
        o, t, oc = c.get("ours"), c.get("torch"), c.get("ours-cached")
        lean = c.get("ours-lean")
        floor_sps = r["batch"] / r["fft_floor_s"]
        fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
        lines.append(
            "| "
            + " | ".join(
                [
                    r["case"],
                    f"{r['n_pad']}^2",
                    str(r["batch"]),
                    fmt(o and o["samples_per_s"]),
                    fmt(t and t["samples_per_s"]),
                    fmt(o and t and o["vs_torch"], "{:.2f}x"),
                    fmt(oc and oc["samples_per_s"]),
                    fmt(floor_sps),
                    fmt(o and o["floor_frac"], "{:.2f}"),
                    fmt(t and t["floor_frac"], "{:.2f}"),
                    f"{fmt(o and o.get('peak_step_mb'), '{:.0f}')} / {fmt(t and t.get('peak_step_mb'), '{:.0f}')}",
                    f"{fmt(lean and lean['samples_per_s'])}, {fmt(lean and lean.get('peak_step_mb'), '{:.0f}')}",
                    f"{r['loadavg_1min']['median']:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--cases", nargs="+", choices=list(CASES))
    p.add_argument("--batch", type=int, help="override every case's batch")
    p.add_argument("--reps", type=int, default=12, help="timed steps per contender")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (FFTW and torch)")
    p.add_argument("--planner", default="measure", choices=["estimate", "measure"])
    p.add_argument(
        "--cache-batches", type=int, default=4, help="distinct batches cycled through (ours-cached holds them all)"
    )
    p.add_argument("--contenders", nargs="+", default=["ours", "ours-cached", "ours-lean", "torch"])
    p.add_argument("--noisy", action="store_true", help="also a noisy SimulatedChip step (ours-noisy)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    args.cases = args.cases or DEFAULT_CASES[args.device]
    if args.device == "cpu" and "big" in args.cases and not args.batch:
        p.error("big is a GPU case; give --batch to run it on the CPU")
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
    result = {
        "benchmark": "B1 one FFM training step",
        "device": args.device,
        "threads": args.threads,
        "planner": args.planner,
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
    md = table(result)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"b1-{platform.node()}-{args.device}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, f"b1-{args.device}.md"), "w") as f:
        f.write(md + "\n")
    print("\n" + md + f"\n\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
