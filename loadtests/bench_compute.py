"""Reward versus compute: what best_of, early pruning and the latency budget buy.

    python -m loadtests.bench_compute --out loadtests/results/compute

Runs the service's own request path in-process (`Reranker.plan` and `.run`,
built from a deploy file by `local_reranker`: no Ray, no HTTP, so this measures
the algorithm, not the plumbing) over a fixed set of chat requests, the same
seeds for every setting, so best-of-16 sees the candidates of best-of-8 and
more. Each request names its pruning explicitly (off, or the schedule given
here); limits, response margin and adaptive best_of are the config's. Three parts:

1. best_of 1, 2, 4, 8, 16 without pruning and with it: mean chosen reward,
   p50/p95 latency, generated tokens per request;
2. the anytime curve: best_of 16 under budgets that are multiples of the
   single-sample p50 latency: mean chosen reward, answers on time, 504s;
3. the targets of issue 4, checked against those figures.

Rewards are the scores of one absolute reward model (default `style-head`):
an ensemble's z-scores are relative to each request's candidates and cannot be
compared across best_of. Writes <out>.csv and <out>.png, prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time

from loadtests.prompts import PROMPTS
from loadtests.report import write_csv



def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# The most the config allows: "no budget" for the parts that measure compute.
UNLIMITED_MS = 120_000


async def run_cell(reranker, prompts, *, best_of, max_tokens, budget_ms, pruning, reward_model, seed):
    """One setting over every prompt, as chat requests through the Reranker."""
    from service.errors import BudgetExhausted
    from service.protocol import ChatCompletionRequest

    rewards, seconds, tokens, finished, timeouts = [], [], [], [], 0
    for i, text in enumerate(prompts):
        request = ChatCompletionRequest.model_validate({
            "model": reranker.generator.model_name, "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens, "best_of": best_of, "seed": seed + 100 * i, "latency_budget_ms": budget_ms,
            "reward_model": reward_model, "pruning": pruning,
        })
        started = time.time()
        try:
            selection = await reranker.run(await reranker.plan(request, arrived=started))
        except BudgetExhausted:
            timeouts += 1
            seconds.append(time.time() - started)
            continue
        seconds.append(time.time() - started)
        rewards.append(selection.chosen[0].score)
        tokens.append(selection.completion_tokens)
        finished.append(selection.chosen[0].candidate.finished)
    return rewards, seconds, tokens, finished, timeouts


def row(label, best_of, pruning_on, budget_s, rewards, seconds, tokens, finished, timeouts, margin_s):
    return {
        "part": label,
        "best_of": best_of,
        "pruning": pruning_on,
        "budget_s": round(budget_s, 3),
        "requests": len(seconds),
        "mean_reward": round(statistics.fmean(rewards), 4) if rewards else float("nan"),
        "p50_s": round(pct(seconds, 0.5), 3),
        "p95_s": round(pct(seconds, 0.95), 3),
        "max_s": round(max(seconds), 3),
        "tokens_per_request": round(statistics.fmean(tokens), 1) if tokens else 0.0,
        "on_time": round(sum(s <= budget_s + margin_s for s in seconds) / len(seconds), 3),
        "late_by_max_s": round(max(0.0, max(seconds) - budget_s), 3),
        "finished_share": round(sum(finished) / len(seconds), 3),  # answers that are whole candidates
        "status_504": timeouts,
    }


async def bench(args) -> list[dict]:
    from service.config import load_serve_file
    from service.serving import local_reranker

    _, config = load_serve_file(args.config)
    reranker = await local_reranker(config)
    prompts = PROMPTS[: args.prompts]
    schedule = {"checkpoints": args.checkpoints, "fraction": args.fraction}
    cell = functools.partial(run_cell, reranker, max_tokens=args.max_tokens, reward_model=args.reward, seed=args.seed)
    # Warm-up: the first requests compile and fill caches.
    await run_cell(reranker, prompts[:2], best_of=2, max_tokens=16, budget_ms=UNLIMITED_MS, pruning=False,
                   reward_model=args.reward, seed=1)

    rows = [r for r in read_rows(args.compute_from) if r["part"] == "compute"] if args.compute_from else []
    for best_of in [] if args.compute_from else args.best_of:
        for prune in (False, True) if best_of > 1 else (False,):
            result = await cell(prompts, best_of=best_of, budget_ms=UNLIMITED_MS, pruning=schedule if prune else False)
            rows.append(row("compute", best_of, prune, UNLIMITED_MS / 1000, *result, args.margin_ms / 1000))
            print(rows[-1], flush=True)

    single_p50 = next(r["p50_s"] for r in rows if r["best_of"] == 1)
    top = max(args.best_of)
    for factor in args.budgets:
        budget_ms = round(factor * single_p50 * 1000)
        result = await cell(prompts, best_of=top, budget_ms=budget_ms, pruning=False)
        rows.append(row(f"anytime x{factor}", top, False, budget_ms / 1000, *result, args.margin_ms / 1000))
        print(rows[-1], flush=True)
    reranker.generator.shutdown()
    return rows


def read_rows(path: str) -> list[dict]:
    """The rows of an earlier run's CSV, typed as written."""
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: float(v) for k, v in r.items() if k not in ("part", "pruning") and v != ""},
                 best_of=int(r["best_of"]), pruning=r["pruning"] == "True")
    return rows


def targets(rows: list[dict], top: int) -> list[str]:
    """Issue 4's targets, as measured."""
    compute = {(r["best_of"], r["pruning"]): r for r in rows if r["part"] == "compute"}
    one, full, pruned = compute[(1, False)], compute[(top, False)], compute.get((top, True))
    gain_full = full["mean_reward"] - one["mean_reward"]
    lines = [f"single-sample p50 {one['p50_s']} s; best-of-{top} gain over best-of-1: {gain_full:+.3f}"]
    for r in rows:
        if r["part"] == "anytime x1.5":
            share = (r["mean_reward"] - one["mean_reward"]) / gain_full if gain_full else float("nan")
            lines.append(
                f"budget 1.5x single p50 ({r['budget_s']} s): {share:.0%} of the full gain (target >= 90%), "
                f"{r['on_time']:.0%} on time (target >= 99%), p95 {r['p95_s']} s, max {r['max_s']} s"
            )
    if pruned:
        share = (pruned["mean_reward"] - one["mean_reward"]) / gain_full if gain_full else float("nan")
        lines.append(
            f"pruning at best-of-{top}: mean reward {pruned['mean_reward']} vs {full['mean_reward']} "
            f"({share:.0%} of the full gain; target: >= 0.98x the reward), tokens "
            f"{pruned['tokens_per_request'] / full['tokens_per_request']:.2f}x (target <= 0.6x), "
            f"p50 {pruned['p50_s']} s vs {full['p50_s']} s"
        )
    return lines


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for prune, style in ((False, "o-"), (True, "s--")):
        cells = [r for r in rows if r["part"] == "compute" and (r["pruning"] == prune or r["best_of"] == 1)]
        left.plot([r["tokens_per_request"] for r in cells], [r["mean_reward"] for r in cells], style,
                  label="pruning on" if prune else "pruning off")
        for r in cells:
            left.annotate(f"{r['best_of']}", (r["tokens_per_request"], r["mean_reward"]), textcoords="offset points",
                          xytext=(4, -10), fontsize=8)
    left.set(xlabel="generated tokens per request", ylabel="mean chosen reward", title="Reward vs compute (best_of)")
    left.legend()
    anytime = [r for r in rows if r["part"].startswith("anytime")]
    right.plot([r["budget_s"] for r in anytime], [r["mean_reward"] for r in anytime], "o-", label="best-of-16, budget")
    for r in anytime:  # how many answers were whole candidates rather than the best partial text
        right.annotate(f"{r['finished_share']:.0%} whole", (r["budget_s"], r["mean_reward"]),
                       textcoords="offset points", xytext=(4, 4), fontsize=7)
    compute = {(r["best_of"], r["pruning"]): r for r in rows if r["part"] == "compute"}
    top = max(b for b, _ in compute)
    right.axhline(compute[(1, False)]["mean_reward"], color="grey", ls=":", label="best-of-1, no budget")
    right.axhline(compute[(top, False)]["mean_reward"], color="black", ls="--", label=f"best-of-{top}, no budget")
    right.set(xlabel="latency budget (s)", ylabel="mean chosen reward", title="Anytime: reward reached by budget")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml", help="deploy file whose generator and rewards to use")
    parser.add_argument("--reward", default="style-head", help="an absolute (non-ensemble) configured reward model")
    parser.add_argument("--best-of", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16])
    parser.add_argument("--budgets", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1, 1.5, 2, 3],
                        help="anytime budgets, as multiples of the single-sample p50 latency")
    parser.add_argument("--checkpoints", type=lambda s: [int(x) for x in s.split(",")], default=[8, 24])
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--margin-ms", type=float, default=100, help="lateness still counted on time")
    parser.add_argument("--out", default="loadtests/results/compute", help="writes <out>.csv and <out>.png")
    parser.add_argument("--compute-from", help="take the best_of/pruning part from this earlier CSV; run the anytime part")
    parser.add_argument("--replot", metavar="CSV", help="only redraw the plot of an earlier run, to <out>.png")
    args = parser.parse_args()
    if args.replot:
        plot(read_rows(args.replot), f"{args.out}.png")
        return 0
    if 1 not in args.best_of:
        parser.error("--best-of must include 1: the budgets are relative to its latency")
    rows = asyncio.run(bench(args))
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_csv(rows, f"{args.out}.csv")
    plot(rows, f"{args.out}.png")
    print("\n".join(targets(rows, max(args.best_of))))
    print(f"wrote {args.out}.csv and {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
