"""Start-up latency of ``ffm-train debug=smoke``: launch to the first round's metric.

Each repetition is a cold command (a new Python process, a new local Ray cluster, a new
SQLite MLflow store in a fresh folder), after one unmeasured warm-up run that leaves the
FFTW wisdom and the OS file cache warm. Measured per run, from the ``subprocess`` launch:

- ``first_round_s``: until the timestamp MLflow holds for ``round/loss`` at step 0 (the first
  round's metrics, logged by the coordinator as the round ends);
- ``first_output_s``: until the command's first line of output;
- ``total_s``: until the command exits (training, final tests, artifacts and shutdown).

Reports the median of the repetitions and every value. Run it on a quiet machine:

    .venv/bin/python benchmarks/start_time.py --reps 5 --out benchmarks/results/start-time.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.join(os.path.dirname(sys.executable), "ffm-train")


def one_run(extra: list[str]) -> dict:
    """One cold ``ffm-train debug=smoke`` in a fresh folder; the times in seconds from launch."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        args = [BIN, "debug=smoke", f"tracking.uri={uri}", f"output_dir={folder}/out", *extra]
        first_line: list[float] = []
        t0 = time.time()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def read() -> None:
            for _ in proc.stdout:
                if not first_line:
                    first_line.append(time.time())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rc = proc.wait()
        total = time.time() - t0
        reader.join(5)
        if rc != 0:
            raise SystemExit(f"ffm-train exited with {rc}: {' '.join(args)}")
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("ffm-optics").experiment_id])
        first = min(m.timestamp for m in client.get_metric_history(run.info.run_id, "round/loss")) / 1000
        return {
            "first_round_s": first - t0,
            "first_output_s": (first_line[0] - t0) if first_line else float("nan"),
            "total_s": total,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=None, help="write the record as JSON here")
    p.add_argument("overrides", nargs="*", help="extra ffm-train overrides")
    args = p.parse_args(argv)
    one_run(args.overrides)  # warm-up: FFTW wisdom, file cache
    runs = [one_run(args.overrides) for _ in range(args.reps)]
    record = {
        "command": "ffm-train debug=smoke " + " ".join(args.overrides),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
    }
    for key, value in record["median"].items():
        print(f"{key}: median {value:.1f} s  ({', '.join(f'{r[key]:.1f}' for r in runs)})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
