"""Shared by the benchmark scripts: efficiency against one chip, the JSON record, the table."""

from __future__ import annotations

import json
import os


def add_efficiency(rows: list[dict], throughput: str) -> None:
    """``efficiency = throughput(K) / (K * throughput(first row) / chips(first row))``, in place."""
    base = rows[0][throughput] / rows[0]["chips"]
    for r in rows:
        r["efficiency"] = r[throughput] / (r["chips"] * base)


def report(path: str, record: dict, title: str, header: list[str], cells) -> None:
    """Write ``record`` as JSON to ``path`` and print a markdown table (``cells(row)`` per row)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in record["rows"]:
        print("| " + " | ".join(cells(r)) + " |")
    print(f"\nwrote {path}")
