"""Reward versus compute: what best_of, the pruning schedules and the latency budget buy.

    python -m loadtests.bench_compute --out docs/perf/compute_v2

Runs the service's own request path in-process (`Reranker.plan` and `.run`,
built from a deploy file by `local_reranker`: no Ray, no HTTP, so this measures
the algorithm, not the plumbing) over a fixed set of chat requests, the same
seeds for every setting, so best-of-32 sees the candidates of best-of-8 and
more. The prompts are the held-out ones (`loadtests.prompts.HELD_OUT_PROMPTS`):
pruning's schedules are tuned on others (loadtests/calibrate_pruning). Each
request names its pruning explicitly; limits, response margin and adaptive
best_of are the config's. The default reward model chooses, and each answer is
re-scored alone by it for the figures. Two parts:

1. every best_of (default 1, 8, 16, 32) under every schedule (default: off,
   today's fraction rule, and the confidence rule at two settings), at
   concurrency 1: the reward gain kept over best_of 1, as a share of the same
   best_of's gain without pruning (mean over prompts of the gains, a ratio of
   means), with 95% bootstrap intervals over prompts; tokens per request and
   their share of no pruning's; p50/p95 latency;
2. optionally (`--budgets`) the anytime curve: the largest best_of under budgets
   that are multiples of the single-sample p50 latency.

Writes <out>.csv (one row per cell), <out>.json (every request's figures, so
the tables can be redrawn: `--replot`) and <out>.png, and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time

from loadtests.prompts import HELD_OUT_PROMPTS
from loadtests.report import write_csv

# The schedules a request can name, as its `pruning` field. `today` is the fraction
# rule deploy/local.yaml has shipped since issue 4; the confidence settings were chosen
# on the tuning prompts only (loadtests/calibrate_pruning --replay).
SCHEDULES = {
    "off": False,
    "today": {"rule": "fraction", "checkpoints": [8, 24], "fraction": 0.5},
    "confidence": {"rule": "confidence", "checkpoints": [8, 12, 16, 24, 32], "confidence": 1.25},
    "confidence-0.75": {"rule": "confidence", "checkpoints": [8, 12, 16, 24, 32], "confidence": 0.75},
    # The config's branch rule (deploy/local.yaml: at 16 tokens the 2 best go on, each continued twice more).
    "branch": {"rule": "branch"},
}
DEFAULT_SCHEDULES = ["off", "today", "confidence", "confidence-0.75"]

# The most the config allows: "no budget" for the part that measures compute.
UNLIMITED_MS = 120_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_cell(reranker, prompts, *, best_of, max_tokens, budget_ms, pruning, seed) -> list[dict]:
    """One setting over every prompt, as chat requests through the Reranker: one record per request."""
    from service.errors import BudgetExhausted
    from service.protocol import ChatCompletionRequest

    judge = (await reranker.catalog.current()).get(reranker.config.default_reward_model)
    records = []
    for i, text in enumerate(prompts):
        request = ChatCompletionRequest.model_validate({
            "model": reranker.generator.model_name, "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens, "best_of": best_of, "seed": seed + 100 * i, "latency_budget_ms": budget_ms,
            "pruning": pruning,
        })
        started = time.time()
        plan = await reranker.plan(request, arrived=started)
        try:
            selection = await reranker.run(plan)
        except BudgetExhausted:
            records.append({"prompt": i, "seconds": time.time() - started, "reward": None, "tokens": 0,
                            "finished": False, "started": 0, "pruned": 0})
            continue
        seconds = time.time() - started
        winner = selection.chosen[0].candidate
        rescored = (await judge.score(plan.prompt, [winner.text])).values[0]
        records.append({"prompt": i, "seconds": seconds, "reward": rescored, "tokens": selection.completion_tokens,
                        "finished": winner.finished, "started": len(selection.candidates),
                        "pruned": selection.candidates_pruned})
    return records


def bootstrap(prompts: int, statistic, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of statistic(indexes) over prompts resampled with replacement."""
    rng = random.Random(seed)
    values = sorted(statistic([rng.randrange(prompts) for _ in range(prompts)]) for _ in range(rounds))
    return values[int(0.025 * rounds)], values[int(0.975 * rounds) - 1]


def summarise(cells: dict[tuple[str, int], list[dict]]) -> list[dict]:
    """One row per (schedule, best_of): gain kept and tokens share against the same best_of unpruned."""
    single = cells[("off", 1)]
    rows = []
    for (schedule, best_of), records in cells.items():
        full = cells.get(("off", best_of))
        # Prompts every compared cell answered (a 504 has no reward).
        ok = [p for p in range(len(records))
              if records[p]["reward"] is not None and single[p]["reward"] is not None
              and full is not None and full[p]["reward"] is not None]

        def gain(cell, idx):
            return statistics.fmean(cell[p]["reward"] - single[p]["reward"] for p in idx)

        def kept(idx):
            base = gain(full, idx)
            return gain(records, idx) / base if base else float("nan")

        def token_share(idx):
            spent = statistics.fmean(records[p]["tokens"] for p in idx)
            return spent / statistics.fmean(full[p]["tokens"] for p in idx)

        seconds = [r["seconds"] for r in records]
        row = {
            "part": "compute", "schedule": schedule, "best_of": best_of, "prompts": len(ok),
            "mean_reward": round(statistics.fmean(records[p]["reward"] for p in ok), 4),
            "gain": round(gain(records, ok), 4),
            "tokens_per_request": round(statistics.fmean(r["tokens"] for r in records), 1),
            "p50_s": round(pct(seconds, 0.5), 3), "p95_s": round(pct(seconds, 0.95), 3),
            "p50_vs_best_of_1": round(pct(seconds, 0.5) / pct([r["seconds"] for r in single], 0.5), 2),
            "candidates_started": round(statistics.fmean(r["started"] for r in records), 1),
            "candidates_pruned": round(statistics.fmean(r["pruned"] for r in records), 1),
            "status_504": sum(r["reward"] is None for r in records),
        }
        if best_of > 1 and schedule != "off":
            low, high = bootstrap(len(ok), lambda idx: kept([ok[i] for i in idx]))
            tlow, thigh = bootstrap(len(ok), lambda idx: token_share([ok[i] for i in idx]))
            row.update(gain_kept=round(kept(ok), 3), gain_kept_low=round(low, 3), gain_kept_high=round(high, 3),
                       token_share=round(token_share(ok), 3), token_share_low=round(tlow, 3),
                       token_share_high=round(thigh, 3))
        elif best_of > 1:
            low, high = bootstrap(len(ok), lambda idx: gain(records, [ok[i] for i in idx]))
            row.update(gain_low=round(low, 4), gain_high=round(high, 4))
        rows.append(row)
    return rows


def anytime_row(best_of, budget_s, records, margin_s) -> dict:
    seconds = [r["seconds"] for r in records]
    rewards = [r["reward"] for r in records if r["reward"] is not None]
    return {
        "part": f"anytime x{budget_s[1]}", "schedule": "off", "best_of": best_of, "budget_s": round(budget_s[0], 3),
        "mean_reward": round(statistics.fmean(rewards), 4) if rewards else float("nan"),
        "p50_s": round(pct(seconds, 0.5), 3), "p95_s": round(pct(seconds, 0.95), 3), "max_s": round(max(seconds), 3),
        "on_time": round(sum(s <= budget_s[0] + margin_s for s in seconds) / len(seconds), 3),
        "finished_share": round(sum(r["finished"] for r in records) / len(records), 3),
        "status_504": sum(r["reward"] is None for r in records),
    }


async def bench(args) -> tuple[dict, list[dict]]:
    from service.config import load_serve_file
    from service.serving import local_reranker

    _, config = load_serve_file(args.config)
    reranker = await local_reranker(config)
    prompts = HELD_OUT_PROMPTS[: args.prompts]

    async def cell(best_of, pruning, budget_ms=UNLIMITED_MS):
        return await run_cell(reranker, prompts, best_of=best_of, max_tokens=args.max_tokens, budget_ms=budget_ms,
                              pruning=pruning, seed=args.seed)

    # Warm-up: the first requests compile and fill caches.
    await run_cell(reranker, prompts[:2], best_of=2, max_tokens=16, budget_ms=UNLIMITED_MS, pruning=False, seed=1)
    cells: dict[tuple[str, int], list[dict]] = {}
    for best_of in args.best_of:
        for name in args.schedules if best_of > 1 else ["off"]:
            cells[(name, best_of)] = await cell(best_of, SCHEDULES[name])
            seconds = [r["seconds"] for r in cells[(name, best_of)]]
            print(f"best_of {best_of} {name}: p50 {pct(seconds, 0.5):.2f} s, tokens "
                  f"{statistics.fmean(r['tokens'] for r in cells[(name, best_of)]):.0f}", flush=True)
    anytime = []
    single_p50 = pct([r["seconds"] for r in cells[("off", 1)]], 0.5)
    for factor in args.budgets:
        budget_ms = round(factor * single_p50 * 1000)
        records = await cell(max(args.best_of), False, budget_ms)
        anytime.append(anytime_row(max(args.best_of), (budget_ms / 1000, factor), records, args.margin_ms / 1000))
        print(anytime[-1], flush=True)
    reranker.generator.shutdown()
    return {f"{name}/{best_of}": records for (name, best_of), records in cells.items()}, anytime


def cells_of(saved: dict) -> dict[tuple[str, int], list[dict]]:
    out = {}
    for key, records in saved.items():
        name, best_of = key.rsplit("/", 1)
        out[(name, int(best_of))] = records
    return out


def table(rows: list[dict]) -> str:
    lines = ["| best_of | schedule | gain over best_of 1 | gain kept [95% CI] | tokens per request | token share "
             "[95% CI] | candidates started / pruned | p50 / p95 (s) | p50 vs best_of 1 |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted((r for r in rows if r["part"] == "compute"), key=lambda r: (r["best_of"], r["schedule"] != "off")):
        kept = (f"{r['gain_kept']:.2f} [{r['gain_kept_low']:.2f}, {r['gain_kept_high']:.2f}]" if "gain_kept" in r
                else ("1 (reference)" if r["best_of"] > 1 else "—"))
        share = (f"{r['token_share']:.2f} [{r['token_share_low']:.2f}, {r['token_share_high']:.2f}]"
                 if "token_share" in r else "1")
        gain = f"{r['gain']:+.2f}" + (f" [{r['gain_low']:+.2f}, {r['gain_high']:+.2f}]" if "gain_low" in r else "")
        lines.append(f"| {r['best_of']} | {r['schedule']} | {gain} | {kept} | {r['tokens_per_request']:.0f} | {share} "
                     f"| {r['candidates_started']:.0f} / {r['candidates_pruned']:.1f} | {r['p50_s']:.2f} / "
                     f"{r['p95_s']:.2f} | {r['p50_vs_best_of_1']:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compute = [r for r in rows if r["part"] == "compute"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    single = next(r for r in compute if r["best_of"] == 1)
    for schedule in dict.fromkeys(r["schedule"] for r in compute):
        cells = [single] + sorted((r for r in compute if r["schedule"] == schedule and r["best_of"] > 1),
                                  key=lambda r: r["best_of"])
        line = left.plot([r["tokens_per_request"] for r in cells], [r["gain"] for r in cells], "o-", label=schedule)
        for r in cells[1:]:
            left.annotate(f"{r['best_of']}", (r["tokens_per_request"], r["gain"]), textcoords="offset points",
                          xytext=(4, -10), fontsize=8, color=line[0].get_color())
        right.plot([r["best_of"] for r in cells], [r["p50_s"] for r in cells], "o-", label=schedule)
    left.set(xscale="log", xlabel="generated tokens per request (log)", ylabel="reward gain over best_of 1",
             title="Gain against compute (labels: best_of)")
    left.legend(fontsize=8)
    right.set(xscale="log", xlabel="best_of", ylabel="p50 latency (s), concurrency 1", title="Latency")
    right.set_xticks([r["best_of"] for r in compute if r["schedule"] == "off"],
                     labels=[str(r["best_of"]) for r in compute if r["schedule"] == "off"])
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml", help="deploy file whose generator and rewards to use")
    parser.add_argument("--best-of", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 16, 32])
    parser.add_argument("--schedules", type=lambda s: s.split(","), default=DEFAULT_SCHEDULES,
                        help=f"pruning schedules to run at each best_of > 1: {', '.join(SCHEDULES)}")
    parser.add_argument("--budgets", type=lambda s: [float(x) for x in s.split(",") if x], default=[],
                        help="anytime budgets, as multiples of the single-sample p50 latency (e.g. 0.5,1,1.5,2,3)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=len(HELD_OUT_PROMPTS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--margin-ms", type=float, default=100, help="lateness still counted on time")
    parser.add_argument("--out", default="loadtests/results/compute", help="writes <out>.csv, .json and .png")
    parser.add_argument("--replot", metavar="JSON", help="only redo the tables and plot of an earlier run")
    args = parser.parse_args()
    if 1 not in args.best_of or "off" not in args.schedules:
        parser.error("--best-of must include 1 and --schedules off: the gains are relative to them")
    unknown = set(args.schedules) - set(SCHEDULES)
    if unknown:
        parser.error(f"unknown schedules: {', '.join(sorted(unknown))}")
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        requests, anytime = saved["requests"], saved["anytime"]
    else:
        requests, anytime = asyncio.run(bench(args))
    rows = summarise(cells_of(requests)) + anytime
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_csv(rows, f"{args.out}.csv")
    if not args.replot:
        with open(f"{args.out}.json", "w") as f:
            json.dump({"args": vars(args), "schedules": {k: SCHEDULES[k] for k in args.schedules},
                       "requests": requests, "anytime": anytime}, f)
    plot(rows, f"{args.out}.png")
    print(table(rows))
    print(f"wrote {args.out}.csv, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
