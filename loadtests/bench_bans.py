"""Slop banned at the source: what a ban list does to candidates and to the chosen answer.

    python -m loadtests.bench_bans --out docs/perf/bans

Through the service's own request path in-process (`local_reranker`, the
embedded default of deploy/local.yaml with a `slop` ban list added: the slop
lexicon's 30 words, BAN_WORDS, banned in the engine), each of the 42 calibration prompts is
asked as a chat request at best_of 1, 4 and 8, without and with the bans, the
same seeds everywhere (pruning off, no budget to speak of). Per setting: slop
phrases and hedges per 100 words over all candidates and over the chosen
answers, and the mean `style-head` reward of the chosen answer (an absolute
reward: comparable across best_of), and the engine's tokens per second while
generating (what the bans cost). Writes <out>.csv and <out>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from loadtests.bench_chosen import ask_unhurried, tells
from loadtests.prompts import CALIBRATION_PROMPTS
from loadtests.report import write_csv


async def cell(reranker, prompts, *, best_of, bans, max_tokens, seed):
    candidates, chosen, rewards, generate_s, tokens = [], [], [], 0.0, 0
    for i, text in enumerate(prompts):
        plan, selection = await ask_unhurried(reranker, text, seed + 100 * i, best_of=best_of, max_tokens=max_tokens,
                                              bans="slop" if bans else False)
        candidates += [tells(s.candidate.text) for s in selection.scored]
        chosen.append(tells(selection.chosen[0].candidate.text))
        generate_s, tokens = generate_s + selection.generate_s, tokens + selection.completion_tokens
        head = (await reranker.catalog.current()).get("style-head")
        rewards.append((await head.score(plan.prompt, [selection.chosen[0].candidate.text])).values[0])

    def mean(rows, key):
        return round(statistics.fmean(r[key] for r in rows), 3)
    return {"best_of": best_of, "bans": bans, "prompts": len(prompts),
            "candidates_slop_per_100w": mean(candidates, "slop_per_100w"),
            "candidates_hedges_per_100w": mean(candidates, "hedges_per_100w"),
            "chosen_slop_per_100w": mean(chosen, "slop_per_100w"),
            "chosen_hedges_per_100w": mean(chosen, "hedges_per_100w"),
            "chosen_words": mean(chosen, "words"),
            "chosen_style_head": round(statistics.fmean(rewards), 4),
            "tokens_per_s": round(tokens / generate_s, 1)}  # what the bans cost the engine, if anything


async def bench(args) -> list[dict]:
    from service.config import BanListConfig, load_serve_file
    from service.serving import local_reranker

    _, config = load_serve_file(args.config)
    config = config.model_copy(update={"bans": {"slop": BanListConfig(lexicon="slop")}})
    reranker = await local_reranker(config)
    prompts = CALIBRATION_PROMPTS[: args.prompts]
    rows = []
    cells = [(b, bans) for b in args.best_of for bans in (False, True)]
    if args.cells:  # e.g. 4:on 8:off, to complete an earlier run
        cells = [(int(c.split(":")[0]), c.split(":")[1] == "on") for c in args.cells]
    for best_of, bans in cells:
        rows.append(await cell(reranker, prompts, best_of=best_of, bans=bans, max_tokens=args.max_tokens,
                               seed=args.seed))
        print(rows[-1], flush=True)
    reranker.generator.shutdown()
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for bans, style in ((False, "o-"), (True, "s--")):
        part = [r for r in rows if r["bans"] == bans]
        label = "bans" if bans else "no bans"
        left.plot([r["best_of"] for r in part], [r["chosen_slop_per_100w"] for r in part], style, label=f"chosen, {label}")
        left.plot([r["best_of"] for r in part], [r["candidates_slop_per_100w"] for r in part], style, alpha=0.4,
                  label=f"all candidates, {label}")
        right.plot([r["best_of"] for r in part], [r["chosen_style_head"] for r in part], style, label=label)
    left.set(xlabel="best_of", ylabel="slop phrases per 100 words", title="Slop in the text")
    right.set(xlabel="best_of", ylabel="style-head reward of the chosen answer", title="Reward of the chosen answer")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml")
    parser.add_argument("--prompts", type=int, default=len(CALIBRATION_PROMPTS))
    parser.add_argument("--best-of", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cells", nargs="+", metavar="BEST_OF:on|off", help="only these settings")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    rows = asyncio.run(bench(args))
    if args.out:
        write_csv(rows, f"{args.out}.csv")
        plot(rows, f"{args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
