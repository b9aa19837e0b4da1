"""B1's record of one case (benchmarks/b1_step.py describes the fields): its header, the
summary of the timed steps (medians, the FFT floor, the ratios), the peak memory of one step,
and the markdown table."""

from __future__ import annotations

import statistics

from b1_contenders import Bench, is_step, noise_draws
from measure import cpu_step_peak_mb


def case_record(b: Bench) -> dict:
    """The case's header: geometry, padded FFT size, batch, data, FFTs and camera draws per step."""
    g, n_pad = b.g, b.n_pad
    return {
        "case": b.case,
        "n": g.n,
        "n_pad": n_pad,
        "pad_per_side": (n_pad - g.n) // 2,
        "batch": b.batch,
        "layers": g.n_layers,
        "pitch_m": g.pitch,
        "distance_m": g.distance,
        "data": b.source,
        "ffts_per_step": 4 * g.n_layers + 2,
        "ffts_per_step_cached": 4 * g.n_layers,
        "noise_draws_per_step": noise_draws(g, b.batch),
    }


def ratios(med: dict) -> dict:
    """Median times against ours-noisy's (> 1: ours-noisy is the faster; the floor: a fraction of the noisy step)."""
    noisy_s = med.get("ours-noisy")
    return {
        "noisy/chip-off": med["ours-chip-off"] / noisy_s if noisy_s and "ours-chip-off" in med else None,
        "noisy/torch-noisy": med["torch-noisy"] / noisy_s if noisy_s and "torch-noisy" in med else None,
        "noise-floor/noisy": med["noise-floor"] / noisy_s if noisy_s and "noise-floor" in med else None,
    }


def summarise(record: dict, times: dict, load: list, batch: int) -> dict:
    """The contenders' rows (median, min, max and all times; samples/s, fraction of the FFT floor,
    speed against torch) from ``times`` (name: seconds per timed step); into ``record`` the FFT
    floor, the ratios, the noise floor and the load average during the timing."""
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {k: {"median_s": med[k], "min_s": min(v), "max_s": max(v), "times_s": v} for k, v in times.items()}
    for k in res:
        if not k.startswith("fft-"):
            res[k]["samples_per_s"] = batch / med[k]  # noise-floor: one step's draws per second, in samples
    fft_best = min(med[k] for k in med if k.startswith("fft-"))
    record["fft_floor_s"] = fft_best * record["ffts_per_step"]
    record["fft_floor_s_cached"] = fft_best * record["ffts_per_step_cached"]
    record["fft_fields_per_s"] = {k: batch / med[k] for k in med if k.startswith("fft-")}
    for k in res:
        if is_step(k):
            res[k]["floor_frac"] = record["fft_floor_s"] / med[k]
    if "torch" in med:
        for k in res:
            if k.startswith("ours"):
                res[k]["vs_torch"] = med["torch"] / med[k]
    record["ratios"] = ratios(med)
    if "noise-floor" in med:
        record["noise_floor_s"] = med["noise-floor"]
    record["loadavg_1min"] = {"min": min(load), "median": statistics.median(load), "max": max(load)}
    return res


# -- peak memory of one step ------------------------------------------------------------------
def cpu_step_peaks(contenders: dict) -> dict:
    """``{step row: MB}``, CPU: the rise of peak RSS over one step, each step warmed first (plans
    and workspaces exist); run in a process whose large blocks come from mmap."""
    names = list(contenders)
    for name in names:
        if is_step(name):
            contenders[name](0)  # warm: plans and workspaces exist
    return {k: cpu_step_peak_mb(lambda k=k: contenders[k](0)) for k in names if is_step(k)}


def gpu_step_peaks(contenders: dict, torch, cp) -> dict:
    """``{step row: MB}``, GPU: torch's rows from ``torch.cuda.max_memory_allocated``, ours from
    the CuPy memory pool (freed first), over one step."""
    mem = {}
    for name in [k for k in contenders if is_step(k)]:
        if name.startswith("torch"):
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
    return mem


# -- the table --------------------------------------------------------------------------------
HEADER = (
    "| case | FFT size | batch | ours-noisy samples/s | ours-chip-off samples/s | noisy / chip-off | "
    "noise floor samples/s (of noisy step) | torch-noisy samples/s | ours-noisy / torch-noisy | "
    "ours samples/s | torch autograd samples/s | ours / torch | "
    "ours, cached input plane | FFT floor samples/s | ours / floor | torch / floor | "
    "peak MB (ours-noisy / chip-off / torch-noisy / ours / torch) | "
    "ours memory-lean (B/4 per pass): samples/s, peak MB | load avg |"
)


def _fmt(v, f="{:.1f}") -> str:
    return "-" if v is None else f.format(v)


def _sps(row):
    return row and row["samples_per_s"]


def _mb(row) -> str:
    return _fmt(row and row.get("peak_step_mb"), "{:.0f}")


def table_row(r: dict) -> str:
    """One case's line of the table."""
    c = r["contenders"]
    o, t, oc, lean = c.get("ours"), c.get("torch"), c.get("ours-cached"), c.get("ours-lean")
    on, off, tn, nf = c.get("ours-noisy"), c.get("ours-chip-off"), c.get("torch-noisy"), c.get("noise-floor")
    ratios = r.get("ratios", {})
    floor_sps = r["batch"] / r["fft_floor_s"]
    cells = [
        r["case"],
        f"{r['n_pad']}^2",
        str(r["batch"]),
        _fmt(_sps(on)),
        _fmt(_sps(off)),
        _fmt(ratios.get("noisy/chip-off"), "{:.2f}"),
        f"{_fmt(_sps(nf))} ({_fmt(ratios.get('noise-floor/noisy'), '{:.2f}')})",
        _fmt(_sps(tn)),
        _fmt(ratios.get("noisy/torch-noisy"), "{:.2f}x"),
        _fmt(_sps(o)),
        _fmt(_sps(t)),
        _fmt(o and t and o["vs_torch"], "{:.2f}x"),
        _fmt(_sps(oc)),
        _fmt(floor_sps),
        _fmt(o and o["floor_frac"], "{:.2f}"),
        _fmt(t and t["floor_frac"], "{:.2f}"),
        " / ".join(_mb(row) for row in (on, off, tn, o, t)),
        f"{_fmt(_sps(lean))}, {_mb(lean)}",
        f"{r['loadavg_1min']['median']:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(result: dict) -> str:
    """The markdown table: the noisy step users run first, then the noise-free step against torch and the floor."""
    dev = result["device"]
    where = result["machine"].get("gpu") or f"{result['machine']['cpu']}, {result['threads']} threads"
    lines = [
        f"B1, one FFM step (data pass + error pass + phase gradients), complex64, {dev.upper()}: {where}; "
        f"{result['machine']['date']}; FFT planner {result['planner']}",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(r) for r in result["cases"]]
    return "\n".join(lines)
