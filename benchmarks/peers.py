"""B1 against the peers: LightRidge 0.2.2 and torchoptics 1.0.2 on the ``ref`` task, side by side with ours.

Runs inside a peer's throwaway environment (``bash benchmarks/peers.sh`` makes them and runs
every configuration), with the repository on PYTHONPATH. The task is B1's ``ref`` case: 200 x
200 px, 36 um, 532 nm, 0.3 m, 5 phase layers, our 10 detectors of 20 px, our digits (the
peers' own examples download MNIST, which cannot run here), batch 64. A peer step is
``zero_grad + forward + loss + backward`` (no optimiser: our step returns gradients too), timed
interleaved with our step (noise-free DigitalTwin, FFTW plans, 2 threads) in the same process, so
the ratio is measured side by side.

- LightRidge: ``lightridge.layers`` only (its ``models`` module is broken). ``defaults``: the
  tutorial's model (``DiffractLayer_Raw`` x 5 + a free-space hop + ``Detector``, pad 50,
  ``approx="Fresnel"``; under NumPy 2 its kernel is complex128, so most of its FFTs run in
  complex128: that is what it ships). ``matched``: pad 32 (our 264^2 FFT) and the kernel cast to
  complex64.
- torchoptics: ``defaults``: float64, ``propagation_method="AUTO"`` (ASM here), ``asm_pad`` 2N
  per side (1000^2 FFTs; about a minute and 10 GB per step, so ``--reps`` is cut to 2).
  ``matched``: float32, ASM, ``asm_pad=(32, 32)``.

    .bench/torchoptics/bin/python benchmarks/peers.py torchoptics matched --out /tmp/peer.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from b1_step import batches, geometry  # noqa: E402
from measure import cpu_step_peak_mb  # noqa: E402

from optics import DigitalTwin, Objective, forward_only_step, get_backend  # noqa: E402


def lightridge_step(torch, g, mode, phases, corners, batch_x, batch_y):
    from lightridge import layers

    pad = 50 if mode == "defaults" else 32
    kw = dict(
        wavelength=g.wavelength,
        pixel_size=g.pitch,
        size=g.n,
        pad=pad,
        distance=g.distance,
        amplitude_factor=1,
        approx="Fresnel",
    )

    class Net(torch.nn.Module):  # the tutorial's structure (lightridge.models is broken)
        def __init__(self):
            super().__init__()
            self.diff = torch.nn.ModuleList([layers.DiffractLayer_Raw(phase_mod=True, **kw) for _ in range(g.n_layers)])
            self.last = layers.DiffractLayer_Raw(phase_mod=False, **kw)
            self.det = layers.Detector(
                x_loc=[c[0] for c in corners], y_loc=[c[1] for c in corners], det_size=g.detector_px, size=g.n
            )

        def forward(self, x):
            for layer in self.diff:
                x = layer(x)
            return self.det(self.last(x))

    model = Net()
    with torch.no_grad():
        for layer, ph in zip(model.diff, phases):
            layer.phase.copy_(torch.from_numpy(ph.astype(np.float32)))
        if mode == "matched":
            for layer in list(model.diff) + [model.last]:
                layer.h.data = layer.h.data.to(torch.complex64)
    params = [p for p in model.parameters() if p.requires_grad]
    info = {
        "fft_size": g.n + 2 * pad,
        "kernel_dtype": str(model.diff[0].h.dtype),
        "approx": "Fresnel",
        "loss": "cross-entropy on lightridge.layers.Detector output (its default Softmax)",
    }

    def step(i):
        x, y = batch_x[i], batch_y[i]
        for p in params:
            p.grad = None
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return step, info


def torchoptics_step(torch, g, mode, phases, masks, batch_x, batch_y, temperature):
    import torchoptics
    from torchoptics import Field, System
    from torchoptics.elements import LinearDetector, PhaseModulator

    torchoptics.set_default_spacing(g.pitch)
    torchoptics.set_default_wavelength(g.wavelength)
    if mode == "matched":
        torchoptics.set_default_dtype(torch.float32)
        prop_kw = dict(propagation_method="ASM", asm_pad=(32, 32))
        fdt, cdt = torch.float32, torch.complex64
    else:
        prop_kw = {}
        fdt, cdt = torch.float64, torch.complex128
    mods = [
        PhaseModulator(torch.nn.Parameter(torch.from_numpy(phases[i]).to(fdt)), z=round(g.distance * (i + 1), 6))
        for i in range(g.n_layers)
    ]
    det = LinearDetector(weight=torch.from_numpy(masks).to(fdt), z=round(g.distance * (g.n_layers + 1), 6))
    system = System(*mods, det)
    params = [p for p in system.parameters() if p.requires_grad]
    cell = float(det.cell_area())
    xs = [x.to(cdt) for x in batch_x]
    pad = prop_kw.get("asm_pad", (2 * g.n, 2 * g.n))[0]
    info = {
        "fft_size": g.n + 2 * pad,
        "dtype": f"{fdt} / {cdt}",
        "propagation_method": prop_kw.get("propagation_method", "AUTO (default)"),
        "asm_pad": str(prop_kw.get("asm_pad", "default (2N per side)")),
        "loss": "cross-entropy on detector energies / T (as ours)",
    }

    def step(i):
        for p in params:
            p.grad = None
        scores = system(Field(xs[i], z=0), **prop_kw) / cell
        loss = torch.nn.functional.cross_entropy(scores / temperature, batch_y[i])
        loss.backward()
        return loss

    return step, info


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("library", choices=["lightridge", "torchoptics"])
    p.add_argument("mode", choices=["defaults", "matched"])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    g = geometry("ref")
    objective = Objective()
    n_batches = args.warmup + args.reps
    data, source = batches(g, args.batch, n_batches)
    twin = DigitalTwin(g, get_backend("numpy", "complex64", fft_threads=args.threads, fft_planner="measure"))
    phases = np.random.default_rng(1).uniform(0, 2 * np.pi, (g.n_layers, g.n, g.n))
    twin.program(phases)
    corners = twin.detectors.corners
    masks = twin.detectors.masks.T.reshape(-1, g.n, g.n).astype(np.float32)
    bx = [torch.from_numpy(x).to(torch.complex64) for x, _ in data]
    by = [torch.from_numpy(y) for _, y in data]
    if args.library == "lightridge":
        peer, info = lightridge_step(torch, g, args.mode, phases, corners, bx, by)
    else:
        peer, info = torchoptics_step(torch, g, args.mode, phases, masks, bx, by, objective.temperature)

    def ours(i):
        return forward_only_step(twin, data[i][0], data[i][1], objective, i, range(args.batch))

    contenders = {"peer": peer, "ours": ours}
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):  # untimed run for peak memory (see b1_step.cpu_peak_memory)
        for fn in contenders.values():
            fn(0)
        mem = {k: cpu_step_peak_mb(lambda k=k: contenders[k](0)) for k in contenders}
        with open(args.out, "w") as f:
            json.dump({"peer_peak_step_mb": mem["peer"], "ours_peak_step_mb": mem["ours"]}, f)
        print(mem)
        return
    times = {k: [] for k in contenders}
    load = []
    for rep in range(n_batches):
        order = list(contenders) if rep % 2 == 0 else list(contenders)[::-1]
        for name in order:
            t0 = time.perf_counter()
            contenders[name](rep)
            dt = time.perf_counter() - t0
            if rep >= args.warmup:
                times[name].append(dt)
        if rep >= args.warmup:
            load.append(os.getloadavg()[0])
        print(f"  rep {rep}: " + ", ".join(f"{k} {times[k][-1]:.3f} s" for k in times if times[k]), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {k: None for k in contenders}  # peers.sh measures it in a second run
    import importlib.metadata as md

    rec = {
        "library": args.library,
        "version": md.version(args.library),
        "mode": args.mode,
        "batch": args.batch,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "data": source,
        "threads": args.threads,
        **info,
        "ours_fft_size": twin.props[-1].n_pad,
        "peer_samples_per_s": args.batch / med["peer"],
        "ours_samples_per_s": args.batch / med["ours"],
        "ours_over_peer": med["peer"] / med["ours"],
        "peer_peak_step_mb": mem["peer"],
        "ours_peak_step_mb": mem["ours"],
        "times_s": times,
        "loadavg_1min": {"min": min(load), "median": statistics.median(load), "max": max(load)},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    with open(args.out, "w") as f:
        json.dump(rec, f, indent=1)
    print(json.dumps({k: v for k, v in rec.items() if k != "times_s"}))


if __name__ == "__main__":
    main()
