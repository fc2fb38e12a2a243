"""What reranking changes in the text people get: the chosen answer against the first sample.

    python -m loadtests.bench_chosen --out docs/perf/chosen

Through the service's own request path in-process (`local_reranker`, the
embedded default of deploy/local.yaml), each of the 42 calibration prompts is
asked once as a chat request with best_of 8, pruning off and no budget to speak
of, so all eight candidates finish; candidate 0 is what plain sampling (best_of
1, same seed) would have returned. For the chosen answer and for candidate 0 it
reports the slop reward's tells (slop phrases and hedges per 100 words,
flattering openers/closers and scaffolding per answer, words) and the `style`
reward of both (the margin is chosen - first). Writes <out>.csv, prints a table.
`--examples N` also writes <out>_examples.md: for the first N prompts, the first
sample beside the chosen answer, with each `style` member's share of the margin
(weight x standardised score difference), so a reader sees why the judge chose.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from loadtests.prompts import CALIBRATION_PROMPTS
from loadtests.report import write_csv


def tells(text: str) -> dict[str, float]:
    from service.reward.slop import HEDGE_PATTERNS, WORD, _count_phrases, count_flattery, count_scaffolding, count_slop

    lower = text.lower()
    words = max(len(WORD.findall(lower)), 1)
    return {"slop_per_100w": 100 * count_slop(lower) / words,
            "hedges_per_100w": 100 * _count_phrases(lower, HEDGE_PATTERNS) / words,
            "flattery": float(count_flattery(lower)), "scaffolding": float(count_scaffolding(text)),
            "words": float(words)}


async def ask_unhurried(reranker, text: str, seed: int, *, best_of: int, max_tokens: int, **extra):
    """`text` as a chat request through the service's request path, pruning off and two minutes
    of budget, so every candidate finishes: (plan, selection)."""
    from service.protocol import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate({
        "model": reranker.generator.model_name, "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens, "best_of": best_of, "seed": seed, "latency_budget_ms": 120_000,
        "reward_model": "style", "pruning": False, **extra})
    plan = await reranker.plan(request)
    return plan, await reranker.run(plan)


async def bench(args) -> list[dict]:
    from service.config import load_serve_file
    from service.serving import local_reranker

    _, config = load_serve_file(args.config)
    reranker = await local_reranker(config)
    rows, examples = [], []
    for i, text in enumerate(CALIBRATION_PROMPTS[: args.prompts]):
        _, selection = await ask_unhurried(reranker, text, args.seed + 100 * i, best_of=args.best_of,
                                           max_tokens=args.max_tokens)
        first = next(s for s in selection.scored if s.candidate.index == 0)
        chosen = selection.chosen[0]
        row = {"prompt": i, "chosen_index": chosen.candidate.index, "reward_chosen": chosen.score,
               "reward_first": first.score, "margin": round(chosen.score - first.score, 4)}
        row |= {f"chosen_{k}": round(v, 3) for k, v in tells(chosen.candidate.text).items()}
        row |= {f"first_{k}": round(v, 3) for k, v in tells(first.candidate.text).items()}
        rows.append(row)
        if i < args.examples:
            examples.append((text, first.candidate.text, chosen.candidate.text))
        print(row, flush=True)
    reranker.generator.shutdown()
    if examples and args.out:
        with open(f"{args.out}_examples.md", "w") as out:
            out.write(await explain(config, examples))
    return rows


def cell(text: str) -> str:
    """A text as one markdown table cell."""
    return text.strip().replace("|", "\\|").replace("\n", "<br>")


async def explain(config, examples: list[tuple[str, str, str]]) -> str:
    """Markdown: each prompt's first sample and chosen answer, and why `style` preferred it."""
    from service.reward import make_reward_models
    from service.types import Prompt

    style_config = config.reward_models["style"]
    style = make_reward_models(config.reward_models)["style"]
    parts = []
    for prompt, first, chosen in examples:
        scores = await style.score(Prompt(text=prompt, max_tokens=64), [first, chosen])
        shares = [f"{m.name} {m.weight * (scores.components[m.name][1] - scores.components[m.name][0]) / m.std:+.2f}"
                  for m in style_config.members]
        parts.append(f"**{prompt}**\n\n| first sample (best_of 1) | chosen (best_of 8) |\n|---|---|\n"
                     f"| {cell(first)} | {cell(chosen)} |\n\n`style` {scores.values[0]:.2f} → {scores.values[1]:.2f}; "
                     "margin by member: " + ", ".join(shares) + "\n")
    return "\n".join(parts)


def summary(rows: list[dict]) -> str:
    lines = [f"{len(rows)} prompts, best_of 8 vs its first sample (the same seed's best_of 1)",
             "| tell | first sample (mean) | chosen (mean) |", "|---|---|---|"]
    for key in ("slop_per_100w", "hedges_per_100w", "flattery", "scaffolding", "words"):
        lines.append(f"| {key} | {statistics.fmean(r['first_' + key] for r in rows):.2f} | "
                     f"{statistics.fmean(r['chosen_' + key] for r in rows):.2f} |")
    margins = [r["margin"] for r in rows]
    lines.append(f"style reward: first {statistics.fmean(r['reward_first'] for r in rows):.3f}, chosen "
                 f"{statistics.fmean(r['reward_chosen'] for r in rows):.3f}; margin mean {statistics.fmean(margins):.3f},"
                 f" median {statistics.median(margins):.3f}; chosen = first in "
                 f"{sum(r['chosen_index'] == 0 for r in rows)} of {len(rows)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml")
    parser.add_argument("--prompts", type=int, default=len(CALIBRATION_PROMPTS))
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out")
    parser.add_argument("--examples", type=int, default=0, help="write the first N side by side (<out>_examples.md)")
    args = parser.parse_args(argv)
    rows = asyncio.run(bench(args))
    print(summary(rows))
    if args.out:
        write_csv(rows, f"{args.out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
