"""The sweep report: test accuracy on the chip per trainer and sweep point, over seeds.

Reads a sweep's finished child runs from MLflow (:func:`pipeline.tracking.tracker.read_runs`),
groups them by (trainer, sweep point), and writes ``sweep.csv`` (one row per group:
seeds, mean, spread, min, max, the gap to the ideal model, gradient fidelity),
``sweep.md`` (the same as a table), and ``sweep.png`` (accuracy against the first sweep
axis, mean and min-max band per trainer); the files are logged to the parent run.
``ideal`` is trained once per seed and drawn at every point of the hardware axes.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from pipeline.reports.photon_report import AXIS, add_photon_columns
from pipeline.sweeps.keys import parse_key, twin_point
from pipeline.tracking.runs import log_run_files, read_runs

TRAINERS = ("ideal", "insilico", "pat", "ffm")


def job_accuracy(run: dict) -> float:
    """Ideal: the twin's test accuracy; otherwise the mean test accuracy over the run's chips."""
    m = run["metrics"]
    if run["tags"].get("trainer") == "ideal":
        return m["final_test_accuracy/twin"]
    chips = [v for k, v in m.items() if k.startswith("final_test_accuracy/") and not k.endswith("twin")]
    return float(np.mean(chips))


def sweep_rows(runs: list[dict]) -> list[dict]:
    """One row per (trainer, point): statistics over seeds; ideal rows repeated at every point."""
    jobs = [
        (*parse_key(r["tags"]["sweep.job"]), job_accuracy(r), r["medians"].get("grad_fidelity_cosine"))
        for r in runs
        if "sweep.job" in r["tags"]
    ]
    points = sorted({p for t, p, *_ in jobs if t != "ideal"} or {p for t, p, *_ in jobs}, key=_sortable)
    ideal: dict = {}
    for t, p, seed, acc, _ in jobs:
        if t == "ideal":
            ideal.setdefault(p, {})[seed] = acc
    rows = []
    for point in points:
        ideal_acc = ideal.get(twin_point(point), {})
        for trainer in TRAINERS:
            sel = (
                [(s, a, None) for s, a in ideal_acc.items()]
                if trainer == "ideal"
                else [(s, a, f) for t, p, s, a, f in jobs if t == trainer and p == point]
            )
            if sel:
                rows.append(_row(trainer, point, sel, ideal_acc))
    return rows


def _sortable(point: tuple):
    return tuple((k, float(v)) if _is_number(v) else (k, 0.0, v) for k, v in point)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row(trainer: str, point: tuple, sel: list, ideal_acc: dict) -> dict:
    acc = np.array([a for _, a, _ in sel])
    gaps = [a - ideal_acc[s] for s, a, _ in sel if s in ideal_acc]
    fid = [f for *_, f in sel if f is not None]
    return {
        "trainer": trainer,
        **dict(point),
        "seeds": len(sel),
        "mean": acc.mean(),
        "std": acc.std(ddof=1) if len(acc) > 1 else 0.0,
        "min": acc.min(),
        "max": acc.max(),
        "gap_to_ideal_pp": 100 * float(np.mean(gaps)) if gaps else float("nan"),
        "fidelity_cosine": float(np.mean(fid)) if fid else float("nan"),
    }


EXTRA_COLUMNS = (
    "photoelectrons_per_detector_px",
    "optical_J_per_op",
    "ops_per_J",
    "hardware_training_s",
    "simulation_job_s",
)


def write_report(rows: list[dict], out_dir: str, title: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    stats = ["trainer", "seeds", "mean", "std", "min", "max", "gap_to_ideal_pp", "fidelity_cosine"]
    extra = [k for k in EXTRA_COLUMNS if any(k in row for row in rows)]
    axes = [k for k in rows[0] if k not in stats and k not in EXTRA_COLUMNS] if rows else []
    cols = axes + stats + extra
    paths = [os.path.join(out_dir, f"sweep.{ext}") for ext in ("csv", "md", "png")]
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(paths[1], "w") as f:
        f.write(f"### {title}\n\nTest accuracy on the chip (ideal: on the twin), over seeds.\n\n")
        f.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for row in rows:
            f.write("| " + " | ".join(_cell(c, row.get(c, "")) for c in cols) + " |\n")
    _plot(rows, axes, paths[2], title)
    return paths


def _cell(col: str, value) -> str:
    if isinstance(value, float):
        if np.isnan(value):
            return ""
        if col == "gap_to_ideal_pp":
            return f"{value:+.1f}"
        return f"{value:.3g}" if col in EXTRA_COLUMNS else f"{value:.3f}"
    return str(value)


def _plot(rows: list[dict], axes: list[str], path: str, title: str) -> None:
    """Accuracy against the first axis per trainer (other axes in the label); a second panel
    with the gradient fidelity (FFM, PAT) when the runs measured it."""
    import matplotlib.pyplot as plt

    from pipeline.reports import figures  # noqa: F401  (selects the Agg backend)

    x_axis, rest = (axes[0], axes[1:]) if axes else (None, [])
    series: dict[str, list] = {}
    for row in rows:
        series.setdefault(" ".join([row["trainer"], *(f"{k}={row[k]}" for k in rest)]), []).append(row)
    labels = sorted({r[x_axis] for r in rows}, key=lambda v: float(v) if _is_number(v) else v) if x_axis else [""]
    numeric = all(_is_number(v) for v in labels)
    x_of = (lambda r: float(r[x_axis]) if numeric else labels.index(r[x_axis])) if x_axis else (lambda r: 0)
    fidelity = {k: v for k, v in series.items() if any(np.isfinite(r["fidelity_cosine"]) for r in v)}
    fig, panels = plt.subplots(1, 2 if fidelity else 1, figsize=(11 if fidelity else 6.4, 4.2), squeeze=False)
    ax, colour = panels[0][0], {label: f"C{i}" for i, label in enumerate(series)}  # one colour per series
    for label, pts in series.items():
        xs = [x_of(r) for r in pts]
        ax.plot(xs, [r["mean"] for r in pts], marker="o", label=label, color=colour[label])
        ax.fill_between(xs, [r["min"] for r in pts], [r["max"] for r in pts], alpha=0.2, color=colour[label])
    ax.set_ylabel("test accuracy (mean, min-max over seeds)")
    for label, pts in fidelity.items():
        ys = [r["fidelity_cosine"] for r in pts]
        panels[0][1].plot([x_of(r) for r in pts], ys, marker="o", label=label, color=colour[label])
    if fidelity:
        panels[0][1].set_ylabel("gradient fidelity (cosine to the true gradient)")
    for ax in panels[0]:
        _x_axis(ax, x_axis, labels, numeric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _x_axis(ax, x_axis, labels: list, numeric: bool) -> None:
    if not numeric:
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    elif labels and min(map(float, labels)) > 0 and max(map(float, labels)) > 100 * min(map(float, labels)):
        ax.set_xscale("log")
    ax.set_xlabel(x_axis or "")


def report_sweep(uri: str, parent_run_id: str, out_dir: str) -> list[str]:
    """Read the sweep's children, write the report files, log them to the parent run."""
    runs = read_runs(uri, "", ["grad_fidelity_cosine", "loss"], skip_rounds=0, parent_run_id=parent_run_id)
    record_name = runs[0]["tags"].get("sweep.name", "sweep") if runs else "sweep"
    rows = sweep_rows(runs)
    if any(AXIS in row for row in rows):  # a photon sweep: light-level columns
        rows = add_photon_columns(rows, runs)
    files = write_report(rows, out_dir, f"{record_name} ({parent_run_id[:8]})")
    log_run_files(uri, parent_run_id, files, "report")
    return files
