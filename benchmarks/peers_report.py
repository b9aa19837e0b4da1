"""Collect benchmarks/peers.py records into benchmarks/results/peers-<host>.json and peers-cpu.md."""

from __future__ import annotations

import glob
import json
import os
import platform
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _mb(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def table(rows: list[dict], missing: list[str]) -> str:
    lines = [
        "B1 ref task (200 px, 5 layers, batch 64) against the peers, each interleaved with our step in "
        "one process (2-core CPU, 2 threads)",
        "",
        "| peer | settings | peer FFT size | peer dtype | peer samples/s | ours samples/s (264^2) | "
        "ours / peer | peak MB per step (peer / ours) | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dtype = r.get("dtype") or f"kernel {r.get('kernel_dtype')}"
        lines.append(
            f"| {r['library']} {r['version']} | {r['mode']} | {r['fft_size']}^2 | {dtype} | "
            f"{r['peer_samples_per_s']:.1f} | {r['ours_samples_per_s']:.1f} | {r['ours_over_peer']:.2f}x | "
            f"{_mb(r['peer_peak_step_mb'])} / {_mb(r['ours_peak_step_mb'])} | {r['loadavg_1min']['median']:.1f} |"
        )
    lines += [f"| {m} | not measured | | | | | | | |" for m in missing]
    return "\n".join(lines)


def main(folder: str) -> None:
    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(folder, "*.json")))]
    for r in rows:
        mem = os.path.join(folder, f"{r['library']}-{r['mode']}.mem")
        if os.path.exists(mem):
            r.update(json.load(open(mem)))
    missing = [open(p).read().strip() for p in sorted(glob.glob(os.path.join(folder, "*.unavailable")))]
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"peers-{platform.node()}.json")
    with open(path, "w") as f:
        json.dump({"benchmark": "B1 peers", "host": platform.node(), "rows": rows, "missing": missing}, f, indent=1)
    md = table(rows, missing)
    with open(os.path.join(RESULTS, "peers-cpu.md"), "w") as f:
        f.write(md + "\n")
    print("\n" + md + f"\n\nwrote {path}")


if __name__ == "__main__":
    main(sys.argv[1])
