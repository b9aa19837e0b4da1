"""The search report: one row per trial, the best configuration, and the figures a researcher
reads first (objective against trial, parallel coordinates, parameter importances).

Rows come from Ray Tune's results (:func:`trial_rows`); files are written by
:func:`write_report`: ``trials.csv``, ``trials.md`` (the table and the best configuration)
and ``search.png``. Importances are Optuna's default evaluator (PED-ANOVA in Optuna 5) over
the trials that finished; with fewer than three of them the panel says so instead.
"""

from __future__ import annotations

import csv
import math
import os
import re

FINISHED, STOPPED, FAILED = "finished", "stopped early", "failed"


def last_line(exc) -> str:
    """An error's last line (its type where it has no text), for a table cell."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]


def trial_rows(results, keys: list[str]) -> list[dict]:
    """One row per trial of a Tune ``ResultGrid``, in the order the trials were created."""
    rows = []
    for order, result in enumerate(results):
        metrics, config = result.metrics or {}, result.config or {}
        if result.error is not None:
            status = FAILED
        elif "test_accuracy" in metrics:
            status = FINISHED
        else:
            status = STOPPED
        history = result.metrics_dataframe
        vals = [] if history is None or "val_accuracy" not in history else list(history["val_accuracy"].dropna())
        rows.append(
            {
                "number": _trial_number(result, metrics, order),
                "trial": metrics.get("trial_id") or os.path.basename(str(result.path or "")),
                **{k: config.get(k) for k in keys},
                "status": status,
                "epochs": int(metrics.get("training_iteration", 0)) if status != FAILED else len(vals),
                "val_accuracy": max(vals) if vals else math.nan,
                "test_accuracy": metrics.get("test_accuracy", math.nan),
                "run_id": metrics.get("run_id", ""),
                "error": "" if result.error is None else last_line(result.error),
            }
        )
    return sorted(rows, key=lambda r: r["number"])


def _trial_number(result, metrics: dict, fallback: int) -> int:
    """The order Tune created the trial in (1-based): the head of its experiment tag
    (``"3_trainer.lr=0.05"``), which its folder name also carries; a restored search lists its
    trials in another order, so the grid's order is only the fallback."""
    tag = str(metrics.get("experiment_tag") or "")
    found = re.match(r"(\d+)_", tag) or re.search(r"_[0-9a-f]{5,}_(\d+)_", os.path.basename(str(result.path or "")))
    return int(found.group(1)) if found else fallback + 1


def best_row(rows: list[dict]) -> dict | None:
    """The finished trial of highest validation accuracy (ties: the earlier trial)."""
    done = [r for r in rows if r["status"] == FINISHED]
    return max(done, key=lambda r: r["val_accuracy"]) if done else None


def write_report(rows: list[dict], keys: list[str], out_dir: str, title: str) -> list[str]:
    """``trials.csv``, ``trials.md`` and ``search.png`` in ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    columns = ["number", "trial", *keys, "status", "epochs", "val_accuracy", "test_accuracy", "run_id", "error"]
    csv_path = os.path.join(out_dir, "trials.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    md_path = os.path.join(out_dir, "trials.md")
    with open(md_path, "w") as f:
        f.write(markdown(rows, keys, title))
    png_path = os.path.join(out_dir, "search.png")
    figure(rows, keys, png_path)
    return [csv_path, md_path, png_path]


def markdown(rows: list[dict], keys: list[str], title: str) -> str:
    """The trials as a table, then the best configuration and the trials' statuses."""
    head = ["#", "trial", *keys, "status", "epochs", "val accuracy", "test accuracy"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["number"]), r["trial"], *(fmt(r[k]) for k in keys), r["status"], str(r["epochs"])]
        cells += [fmt(r["val_accuracy"]), fmt(r["test_accuracy"])]
        lines.append("| " + " | ".join(cells) + " |")
    best = best_row(rows)
    counts = {s: sum(r["status"] == s for r in rows) for s in (FINISHED, STOPPED, FAILED)}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(rows)} trials."]
    if best is not None:
        shown = ", ".join(f"{k}={fmt(best[k])}" for k in keys)
        lines.append(
            f"Best (validation): trial {best['trial']}, {shown}: val {fmt(best['val_accuracy'])}, "
            f"test {fmt(best['test_accuracy'])}."
        )
    return "\n".join(lines) + "\n"


def fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def figure(rows: list[dict], keys: list[str], path: str) -> None:
    """Three panels: validation accuracy per trial (by status), parallel coordinates, importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    _objective_panel(axes[0], rows)
    _parallel_panel(axes[1], rows, keys)
    _importance_panel(axes[2], rows, keys)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _objective_panel(ax, rows: list[dict]) -> None:
    marks = {FINISHED: ("o", "C0"), STOPPED: ("x", "C1"), FAILED: ("s", "C3")}
    for status, (marker, color) in marks.items():
        pts = [(i, r["val_accuracy"]) for i, r in enumerate(rows) if r["status"] == status]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker=marker, color=color, label=status)
    best, running = [], -math.inf
    for r in rows:
        if r["status"] == FINISHED:
            running = max(running, r["val_accuracy"])
        best.append(running if running > -math.inf else math.nan)
    ax.step(range(len(rows)), best, where="post", color="k", lw=1, label="best finished so far")
    ax.set(xlabel="trial (order created)", ylabel="validation accuracy (best epoch)", title="objective")
    ax.legend(fontsize=8)


def _parallel_panel(ax, rows: list[dict], keys: list[str]) -> None:
    """Each finished or stopped trial as a line over its parameters (log axes where log-spread) and its accuracy."""
    shown = [r for r in rows if r["status"] != FAILED and not math.isnan(r["val_accuracy"])]
    columns = [*keys, "val_accuracy"]
    if not shown:
        ax.text(0.5, 0.5, "no trial reported", ha="center")
        return
    scaled = {c: _unit([r[c] for r in shown]) for c in columns}
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for i in range(len(shown)):
        ax.plot(range(len(columns)), [scaled[c][i] for c in columns], color=cmap(scaled["val_accuracy"][i]), alpha=0.8)
    ax.set_xticks(range(len(columns)), [c.split(".")[-1] for c in columns])
    ax.set(ylabel="scaled to each axis' range", title="parallel coordinates (colour: val accuracy)")


def _unit(values: list) -> list[float]:
    """Values mapped to [0, 1] (log scale when positive and spread over a decade; choices by rank)."""
    if not all(isinstance(v, int | float) for v in values):
        order = sorted({str(v) for v in values})
        return [order.index(str(v)) / max(1, len(order) - 1) for v in values]
    x = [float(v) for v in values]
    if min(x) > 0 and max(x) / min(x) > 10:
        x = [math.log10(v) for v in x]
    lo, hi = min(x), max(x)
    return [0.5 if hi == lo else (v - lo) / (hi - lo) for v in x]


def _importance_panel(ax, rows: list[dict], keys: list[str]) -> None:
    importances = param_importances(rows, keys)
    ax.set_title("parameter importance (Optuna, finished trials)")
    if not importances:
        ax.text(0.5, 0.5, "needs 3 finished trials", ha="center")
        return
    names = list(importances)
    ax.barh([n.split(".")[-1] for n in names], [importances[n] for n in names])
    ax.set_xlabel("importance (sums to 1)")


def param_importances(rows: list[dict], keys: list[str]) -> dict[str, float]:
    """Optuna's default importances of ``keys`` for validation accuracy over the finished trials."""
    import optuna

    done = [r for r in rows if r["status"] == FINISHED]
    if len(done) < 3:
        return {}
    numeric = {k: all(isinstance(r[k], int | float) and not isinstance(r[k], bool) for r in done) for k in keys}
    dists = {k: _distribution([r[k] for r in done], numeric[k]) for k in keys}
    try:  # a figure panel: whatever Optuna refuses leaves the panel empty, never the report
        study = optuna.create_study(direction="maximize")
        for r in done:
            params = {k: r[k] if numeric[k] else str(r[k]) for k in keys}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=r["val_accuracy"]))
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError, TypeError):
        return {}


def _distribution(values: list, numeric: bool):
    import optuna

    if numeric:
        lo, hi = min(values), max(values)
        return optuna.distributions.FloatDistribution(float(lo), float(hi if hi > lo else lo + 1e-12))
    return optuna.distributions.CategoricalDistribution(sorted({str(v) for v in values}))
