"""Run the locust load headless against any URL, once or as a concurrency sweep.

    python -m loadtests.load --url http://127.0.0.1:8000 --users 4 --time 60s
    python -m loadtests.load --url http://127.0.0.1:8000 --sweep 1,2,4,8 --time 60s

One run writes locust's CSV (<out>_stats.csv, ...) and HTML report (<out>.html)
plus <out>_summary.json: requests/s, p50/p95/p99, failure rate and goodput.
A sweep does one run per user count (<out>_u<N>_*) and writes <out>.csv and
<out>.png: throughput, goodput and p95 latency against concurrency. The mix
comes from the PRUNE_* environment variables (see loadtests/locustfile.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from loadtests.report import write_csv

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def run_locust(url: str, users: int, run_time: str, out: str, extra: list[str] = ()) -> dict:
    """One headless locust run; returns its summary."""
    summary = f"{out}_summary.json"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--host", url, "--users", str(users), "--spawn-rate", str(users), "--run-time", run_time,
        "--stop-timeout", "120", "--csv", out, "--html", f"{out}.html", "--summary", summary, *extra,
    ]
    print(f"locust: {users} users for {run_time} against {url}", flush=True)
    # Exit code 1 means "some requests failed": the summary says how many; not a crash.
    done = subprocess.run(command, stdout=sys.stdout, stderr=subprocess.STDOUT)
    if done.returncode not in (0, 1) or not os.path.exists(summary):
        raise SystemExit(f"locust failed (exit {done.returncode})")
    with open(summary) as f:
        return json.load(f)


def plot_sweep(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [r["users"] for r in rows]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(users, [r["requests_per_s"] for r in rows], "o-", label="throughput (req/s)")
    left.plot(users, [r["goodput_per_s"] for r in rows], "s-", label="goodput (req/s within budget)")
    left.set(xlabel="concurrent users", ylabel="requests per second", title=title)
    left.set_xscale("log", base=2)
    left.set_xticks(users, [str(u) for u in users])
    right = left.twinx()
    right.plot(users, [r["p95_s"] or 0 for r in rows], "^--", color="tab:red", label="p95 latency (s)")
    right.set_ylabel("p95 latency (s)")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8000")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--users", type=int, default=4, help="concurrent users for one run")
    how.add_argument("--sweep", help="user counts to step through, e.g. 1,2,4,8")
    parser.add_argument("--time", default="60s", help="run time per run (locust syntax: 60s, 5m)")
    parser.add_argument("--out", default="loadtests/results/load", help="prefix of the files written")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not args.sweep:
        run_locust(args.url, args.users, args.time, args.out)
        print(f"wrote {args.out}.html, {args.out}_stats.csv and {args.out}_summary.json")
        return 0
    rows = []
    for users in [int(u) for u in args.sweep.split(",")]:
        summary = run_locust(args.url, users, args.time, f"{args.out}_u{users}")
        rows.append({"users": users, **summary})
    write_csv(rows, f"{args.out}.csv")
    plot_sweep(rows, f"{args.out}.png", f"prune under load ({args.url})")
    for r in rows:
        print(f"{r['users']:>3} users: {r['requests_per_s']} req/s, goodput {r['goodput_per_s']}, "
              f"p50 {r['p50_s']} s, p95 {r['p95_s']} s, failures {r['failure_rate']}")
    print(f"wrote {args.out}.csv and {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
