"""``ffm-report``: tables and plots from the runs in MLflow.

``ffm-report sweep <parent run id>``: the table (CSV, markdown) and plot of a sweep
(``ffm-train experiment=imperfection_sweep`` and the other sweep experiments), read from
its child runs and logged to its parent run.

``ffm-report replay <spool>``: send what a run's tracking spool still holds (after an outage
longer than the run waited for, or a killed driver) to the tracking server.

``ffm-report scaling``: throughput, efficiency against one chip, coordinator overhead, the
per-round time breakdown and accuracy for every (topology, chip count) job of
``ffm-train experiment=scaling``; writes ``scaling.csv``, ``scaling.md`` and
``scaling.png`` and logs them to a report run in the same MLflow experiment.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

from pipeline.tracking.metric_names import TIMING_KEYS
from pipeline.tracking.runs import log_report, read_runs
from pipeline.tracking.server import DEFAULT_ROOT, default_uri

KEYS = list(TIMING_KEYS)  # the round timings, medians over rounds


def scaling_rows(runs: list[dict]) -> list[dict]:
    """One row per (topology, chips), efficiency against the same topology's one-chip run."""
    rows = []
    for r in runs:
        p, m = r["params"], r["metrics"]
        acc = [v for k, v in m.items() if k.startswith("final_test_accuracy/") and not k.endswith("twin")]
        rows.append(
            {
                "topology": p.get("topology.kind"),
                "chips": int(p.get("topology.n_chips", 0)),
                "test_accuracy": sum(acc) / len(acc) if acc else float("nan"),
                **r["medians"],
                "run_id": r["run_id"],
            }
        )
    rows.sort(key=lambda row: (row["topology"], row["chips"]))
    base = {row["topology"]: row["samples_per_s"] / row["chips"] for row in rows if row["chips"] == 1}
    for row in rows:
        b = base.get(row["topology"])
        row["efficiency"] = row["samples_per_s"] / (row["chips"] * b) if b else float("nan")
    return rows


def write_scaling(rows: list[dict], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    cols = [
        "topology",
        "chips",
        "samples_per_s",
        "efficiency",
        "overhead_frac",
        "bubble_frac",
        "round_s",
        "slowest_chip_s",
        "broadcast_s",
        "collect_s",
        "update_s",
        "logging_s",
        "test_accuracy",
        "run_id",
    ]
    csv_path, md_path, png_path = (os.path.join(out_dir, f"scaling.{ext}") for ext in ("csv", "md", "png"))
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    fmt = {
        "samples_per_s": "{:.1f}",
        "efficiency": "{:.2f}",
        "overhead_frac": "{:.1%}",
        "bubble_frac": "{:.1%}",
        "test_accuracy": "{:.3f}",
    }
    shown = [c for c in cols if c != "run_id"]
    with open(md_path, "w") as f:
        f.write("| " + " | ".join(shown) + " |\n|" + "---|" * len(shown) + "\n")
        for row in rows:
            cells = [
                fmt.get(c, "{:.4f}" if isinstance(row.get(c), float) else "{}").format(row.get(c, ""))
                if row.get(c) is not None
                else ""
                for c in shown
            ]
            f.write("| " + " | ".join(cells) + " |\n")
    _plot(rows, png_path)
    return [csv_path, md_path, png_path]


def _plot(rows: list[dict], path: str) -> None:
    import matplotlib.pyplot as plt

    from pipeline.reports import figures  # noqa: F401  (selects the Agg backend)

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(10, 3.8))
    for topo in sorted({r["topology"] for r in rows}):
        pts = [r for r in rows if r["topology"] == topo]
        ax_t.plot([r["chips"] for r in pts], [r["samples_per_s"] for r in pts], marker="o", label=topo)
        ax_e.plot([r["chips"] for r in pts], [r["efficiency"] for r in pts], marker="o", label=topo)
    for ax, label in ((ax_t, "samples / s"), (ax_e, "efficiency vs one chip")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("chips")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["replay"]:
        return _replay(argv[1:])
    p = argparse.ArgumentParser(
        prog="ffm-report",
        description=__doc__.splitlines()[0],
        epilog="ffm-report replay <spool> [--uri URI]: send a run's leftover tracking spool",
    )
    p.add_argument("study", choices=["scaling", "sweep"])
    p.add_argument("run_id", nargs="?", help="sweep: the sweep's parent run id")
    p.add_argument("--experiment", default="ffm-scaling", help="scaling: MLflow experiment holding the runs")
    p.add_argument(
        "--uri", default=default_uri(), help="tracking URI (default: $MLFLOW_TRACKING_URI or the local store)"
    )
    p.add_argument("--out", default=None, help="output folder (default: outputs/reports/<study>[/<run id>])")
    args = p.parse_args(argv)
    if args.study == "sweep":
        return _sweep(args)
    args.out = args.out or os.path.join(DEFAULT_ROOT, "reports", "scaling")
    try:
        runs = [r for r in read_runs(args.uri, args.experiment, KEYS) if "topology.kind" in r["params"]]
    except ValueError as exc:
        print(f"ffm-report: error: {exc}", file=sys.stderr)
        return 2
    rows = scaling_rows(runs)
    files = write_scaling(rows, args.out)
    run_id = log_report(args.uri, args.experiment, "scaling-report", files)
    with open(files[1]) as f:
        print(f.read())
    print(f"wrote {', '.join(files)}; logged to MLflow run {run_id}")
    return 0


def _sweep(args) -> int:
    from pipeline.reports.sweep_report import report_sweep

    if not args.run_id:
        print(
            "ffm-report: error: ffm-report sweep needs the sweep's parent run id "
            "(printed by ffm-train, shown in the MLflow UI)",
            file=sys.stderr,
        )
        return 2
    try:
        out = args.out or os.path.join(DEFAULT_ROOT, "reports", "sweep", args.run_id)
        files = report_sweep(args.uri, args.run_id, out)
    except ValueError as exc:
        print(f"ffm-report: error: {exc}", file=sys.stderr)
        return 2
    with open(files[1]) as f:
        print(f.read())
    print(f"wrote {', '.join(files)}; logged to the parent run {args.run_id}")
    return 0


def _replay(argv: list[str]) -> int:
    """``ffm-report replay <spool> [--uri URI] [--timeout S]``: drain a leftover spool, in order, once."""
    from pipeline.tracking.server import TrackingUnavailable, probe, replay_spool
    from pipeline.tracking.spool import SpoolBacklog, SpoolBusy, read_meta

    p = argparse.ArgumentParser(prog="ffm-report replay", description=_replay.__doc__)
    p.add_argument("spool", help="the run's tracking spool folder (<output_dir>/tracking-spool)")
    p.add_argument("--uri", default=None, help="tracking URI (default: the one the run logged to)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (default: never)")
    args = p.parse_args(argv)
    try:
        uri = args.uri or read_meta(args.spool).get("uri") or default_uri()
        probe(uri)
        sent = replay_spool(args.spool, uri, args.timeout)
    except (FileNotFoundError, ValueError, SpoolBusy, TrackingUnavailable) as exc:
        print(f"ffm-report: error: {exc}", file=sys.stderr)
        return 2
    except SpoolBacklog as exc:
        print(f"ffm-report: sent {exc.sent} records; {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} records from {args.spool} to {uri}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
