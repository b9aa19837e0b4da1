"""B1, one case (benchmarks/b1_step.py describes it): build the contenders, time them step by
step interleaved (the order rotating every repetition), summarise, and measure the peak memory
of one step on the GPU (the CPU's is measured in a child process: ``b1_step.cpu_peak_memory``)."""

from __future__ import annotations

import os

from b1_contenders import fft_probes, ours_contenders, setup, torch_contenders
from b1_report import case_record, cpu_step_peaks, gpu_step_peaks, summarise
from measure import Clock


def time_interleaved(case: str, contenders: dict, args, clock) -> tuple[dict, list]:
    """``--warmup`` then ``--reps`` rounds of one step per contender, the order rotated every round
    (a load burst hits every contender alike): ``({name: [seconds]}, [1-min load average])`` of the timed rounds."""
    names = list(contenders)
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
    return times, load


def run_case(case: str, args, torch, cp) -> dict:
    """The case's record (``--memory-only``: ``{"case", "peak_step_mb"}``, the CPU's peak memory)."""
    b = setup(case, args)
    contenders, noisy = ours_contenders(b)
    record = case_record(b)
    torch_rows, grad_err = torch_contenders(b, torch, noisy)
    contenders.update(torch_rows)
    if grad_err is not None:
        record["grad_rel_err_ours_vs_torch"] = grad_err
    contenders.update(fft_probes(b, torch))
    if args.memory_only:  # CPU peak memory, in a process whose large blocks come from mmap
        return {"case": case, "peak_step_mb": cpu_step_peaks(contenders)}
    times, load = time_interleaved(case, contenders, args, Clock(args.device, cp, torch))
    res = summarise(record, times, load, b.batch)
    # peak memory of one step per contender (untimed); the CPU's: in a separate process
    if args.device != "cpu":
        for k, v in gpu_step_peaks(contenders, torch, cp).items():
            res[k]["peak_step_mb"] = v
    record["taps_mb"] = 2 * b.g.n_layers * b.batch * b.g.n * b.g.n * 8 / 2**20
    record["contenders"] = res
    return record
