"""Shared output of the benchmark scripts."""

from __future__ import annotations

import csv


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        # Every column any row has, in first-seen order; rows without one leave it empty.
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)
