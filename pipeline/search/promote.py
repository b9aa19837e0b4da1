"""Multi-fidelity promotion: the best configurations of a search on simulated chips, re-run on rigs.

A search over simulated chips is cheap; a rig's time is not (every sample costs camera frames
and SLM writes). With ``search.top_k=k`` the ``k`` finished trials of highest validation
accuracy are trained again, one after another, on ``search.promote_chip`` (``rig``: an emulated
rig on 127.0.0.1 unless ``rig.address`` names a real one), as child runs of the same parent.
The report puts both rankings side by side (simulated validation and test accuracy, rig test
accuracy) with the frames each promoted run spent, read back from its run's rig counters.
"""

from __future__ import annotations

import math
import os

from pipeline.reports.run_report import summary_accuracy
from pipeline.search import report
from pipeline.search.trial import trial_config

FRAMES = "rig/frames"  # the rig counters' suffix: round/, val_, test_, final_test_, startup/


def top_rows(rows: list[dict], k: int) -> list[dict]:
    """The ``k`` finished trials of highest validation accuracy, best first (ties: earlier trial)."""
    done = [r for r in rows if r["status"] == report.FINISHED]
    return sorted(done, key=lambda r: (-r["val_accuracy"], r["number"]))[:k]


def promote(promoted_base: dict, rows: list[dict], keys: list[str], parent: str, record) -> list[dict]:
    """Train each of the top rows' configurations on the promoted chip (``promoted_base``: the
    search's configuration composed with ``chip=<search.promote_chip>``, plain mapping; ``record``
    the search's :class:`pipeline.tracking.runs.SweepRecord`); returns
    one row per promoted run: the simulated ranking, the rig's test accuracy and frames spent."""
    import ray

    from pipeline.run.driver import train

    task = ray.remote(num_cpus=0, max_retries=0)(train)
    out = []
    for rank, row in enumerate(top_rows(rows, promoted_base["search"]["top_k"]), start=1):
        point = {k: row[k] for k in keys}
        d = trial_config(promoted_base, point, f"promoted-{row['trial']}", parent)
        d["tracking"]["tags"] |= {"search.promoted_from": row["trial"], "search.sim_rank": str(rank)}
        print(
            f"  promoting trial {row['trial']} (simulated rank {rank}) to {promoted_base['chip']['kind']}", flush=True
        )
        try:
            summary = ray.get(task.remote(d))
        except Exception as exc:  # noqa: BLE001  (a failed promotion is recorded; the next one runs)
            out.append(_row(rank, row, keys, math.nan, math.nan, "", report.last_line(exc)))
            continue
        # every camera frame its rigs took: rounds, validations, tests, start-up calibrations
        frames = record.metric_total(summary["run_id"], FRAMES)
        out.append(_row(rank, row, keys, summary_accuracy(summary), frames, summary["run_id"], ""))
    return out


def _row(rank: int, row: dict, keys: list[str], rig_test: float, frames: float, run_id: str, error: str) -> dict:
    return {
        "sim_rank": rank,
        "trial": row["trial"],
        **{k: row[k] for k in keys},
        "sim_val_accuracy": row["val_accuracy"],
        "sim_test_accuracy": row["test_accuracy"],
        "rig_test_accuracy": rig_test,
        "rig_frames": frames,
        "run_id": run_id,
        "error": error,
    }


def write_promotion(rows: list[dict], keys: list[str], out_dir: str) -> list[str]:
    """``promotion.csv`` and ``promotion.md``: the simulated and rig rankings side by side."""
    import csv

    os.makedirs(out_dir, exist_ok=True)
    csv_path, md_path = os.path.join(out_dir, "promotion.csv"), os.path.join(out_dir, "promotion.md")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    by_rig = sorted(range(len(rows)), key=lambda i: -_finite(rows[i]["rig_test_accuracy"]))
    rig_rank = {i: n for n, i in enumerate(by_rig, start=1)}
    head = ["sim rank", "rig rank", "trial", *keys, "sim val", "sim test", "rig test", "rig frames"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        cells = [str(r["sim_rank"]), str(rig_rank[i]), r["trial"], *(report.fmt(r[k]) for k in keys)]
        cells += [report.fmt(r[k]) for k in ("sim_val_accuracy", "sim_test_accuracy", "rig_test_accuracy")]
        cells.append(f"{r['rig_frames']:.0f}" if math.isfinite(r["rig_frames"]) else r["error"] or "")
        lines.append("| " + " | ".join(cells) + " |")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [csv_path, md_path]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf
