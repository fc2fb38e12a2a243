"""Calibration of the commit point: how early a stream may commit to its leader.

    python -m loadtests.baseline serve &      # vLLM's server on :8001, the engine settings of deploy/local.yaml
    python -m loadtests.calibrate_commit --vllm-url http://127.0.0.1:8001 --out docs/perf/commit_calibration

A leader-commit stream (service.commit) keeps, at k tokens, the candidate whose
first k tokens score best, and aborts the rest. This measures what that costs.
For each prompt (chat, `max_tokens` 128, seeds seed..seed+15) it samples 16
candidates to the end (the same sampling as prune's generator, here from vLLM's
server), cuts each at k = 4, 8, 16, 32, 64 tokens (the model's tokenizer; a
candidate with no more than k tokens had finished by then and competes whole),
and scores with the deploy file's reward models. For best_of 8 (the first 8
candidates) and 16, per k:

- hit rate: the leader at k (best of the N prefixes, scored in one call, as the
  commit judges them) is the full best-of-N winner (best of the N finished
  texts, scored in one call, as selection judges them); top-2: the winner is
  one of the two leaders;
- regret in units of the best-of-N gain, with the default reward: mean of
  (winner - leader's final) / mean of (winner - candidate 0), both from the
  call that scored the N finals; `gain_kept` is one minus it;
- the same with an absolute reward (`style-head`: a text's score does not
  depend on the others): mean final reward of the committed candidate, of the
  buffered winner, of candidate 0, and the share of the gain kept;
- partial offsets: with the N finals and the N prefixes scored in one call, the
  mean of (final - prefix) over candidates that were really cut at k. Negative:
  the reward model rates cut texts above the texts they became. These are the
  `partial_offsets` of the config (service.partials).

Pruning before the commit is left out: this measures the commit decision alone.
Writes <out>.csv (one row per best_of and k), <out>.json (the rows and every
per-prompt record, so other questions need no new run) and <out>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass

from loadtests.prompts import CALIBRATION_PROMPTS
from loadtests.report import write_csv


def best(scores: list[float]) -> int:
    """The index of the highest score; ties go to the earlier candidate, as in selection."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def top(scores: list[float], count: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:count]


@dataclass
class Record:
    """One prompt, one best_of, one k."""

    prompt: int
    best_of: int
    k: int
    leader: int
    winner: int
    top2: list[int]
    partial: list[float]  # the default reward of the N prefixes at k, scored together (as the commit judges)
    final: list[float]  # the default reward of the N finals, scored together
    final_abs: list[float]  # the absolute reward of the N finals
    offsets: list[float]  # default reward, final - prefix (scored together), candidates cut at k only
    offsets_abs: list[float]  # absolute reward, final - prefix, candidates cut at k only
    cut: int  # candidates with more than k tokens


def summarise(records: list[Record]) -> dict:
    """The figures of one (best_of, k) over its prompts."""
    regret = [r.final[r.winner] - r.final[r.leader] for r in records]
    gain = [r.final[r.winner] - r.final[0] for r in records]
    committed = statistics.mean(r.final_abs[r.leader] for r in records)
    buffered = statistics.mean(r.final_abs[r.winner] for r in records)
    first = statistics.mean(r.final_abs[0] for r in records)
    offsets = [o for r in records for o in r.offsets]
    offsets_abs = [o for r in records for o in r.offsets_abs]
    regret_units = statistics.mean(regret) / statistics.mean(gain) if statistics.mean(gain) else 0.0
    return {
        "best_of": records[0].best_of,
        "k": records[0].k,
        "prompts": len(records),
        "hit_rate": statistics.mean(r.leader == r.winner for r in records),
        "top2_rate": statistics.mean(r.winner in r.top2 for r in records),
        "regret_in_gain_units": regret_units,
        "gain_kept": 1 - regret_units,
        "committed_final_reward_abs": committed,
        "buffered_final_reward_abs": buffered,
        "first_sample_reward_abs": first,
        "gain_kept_abs": (committed - first) / (buffered - first) if buffered != first else 0.0,
        "partial_offset_default": statistics.mean(offsets) if offsets else 0.0,
        "partial_offset_abs": statistics.mean(offsets_abs) if offsets_abs else 0.0,
        "cut_share": sum(r.cut for r in records) / sum(r.best_of for r in records),
    }


def margin_policy(records: list[Record], ks: list[int], margin: float) -> dict:
    """Commit at the first k in `ks` where the leader's partial reward leads the
    runner-up's by at least `margin`, else at the last k: the gain kept and the
    mean commit point, over the (prompt, best_of) groups of `records`."""
    groups: dict[tuple[int, int], dict[int, Record]] = {}
    for r in records:
        groups.setdefault((r.prompt, r.best_of), {})[r.k] = r
    chosen = []
    for by_k in groups.values():
        for k in ks:
            first, second = sorted(by_k[k].partial, reverse=True)[:2]
            if first - second >= margin or k == ks[-1]:
                chosen.append(by_k[k])
                break
    regret = statistics.mean(r.final[r.winner] - r.final[r.leader] for r in chosen)
    gain = statistics.mean(r.final[r.winner] - r.final[0] for r in chosen)
    return {"margin": margin, "mean_k": statistics.mean(r.k for r in chosen),
            "gain_kept": 1 - regret / gain if gain else 0.0,
            "hit_rate": statistics.mean(r.leader == r.winner for r in chosen)}


def prefix(tokenizer, text: str, k: int) -> tuple[str, bool]:
    """The first k tokens of a text, and whether it had more (was cut)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= k:
        return text, False
    return tokenizer.decode(ids[:k], skip_special_tokens=True), True


async def calibrate(args) -> tuple[list[dict], list[Record]]:
    from transformers import AutoTokenizer

    from service.config import OpenAIGeneratorConfig, VLLMGeneratorConfig, load_serve_file
    from service.embedded import resolve_model_path
    from service.generator.openai import OpenAIGenerator
    from service.reward import make_reward_models
    from service.types import Deadline, Prompt, SamplingSpec

    _, config = load_serve_file(args.config)
    assert isinstance(config.generator, VLLMGeneratorConfig)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.generator.model))
    rewards = make_reward_models(config.reward_models)
    for model in rewards.values():
        await model.start()
    default, absolute = rewards[args.reward_model or config.default_reward_model], rewards[args.absolute_reward]
    generator = OpenAIGenerator(OpenAIGeneratorConfig(url=args.vllm_url,
                                                      served_model_name=config.generator.served_model_name))
    most = max(args.best_of)
    records: list[Record] = []
    generating = scoring = 0.0
    for p, text in enumerate(CALIBRATION_PROMPTS[: args.prompts]):
        prompt = Prompt(messages=({"role": "user", "content": text},), max_tokens=args.max_tokens)
        started = time.perf_counter()
        sampling = SamplingSpec(max_tokens=args.max_tokens, seed=args.seed + 100 * p)
        candidates = [c async for c in generator.generate(prompt, sampling, most, Deadline.after_ms(10**8))]
        texts = [c.text for c in sorted(candidates, key=lambda c: c.index)]
        generating += time.perf_counter() - started
        started = time.perf_counter()
        for n in args.best_of:
            finals = texts[:n]
            final = (await default.score(prompt, finals)).values
            final_abs = (await absolute.score(prompt, finals)).values
            for k in args.ks:
                cuts = [prefix(tokenizer, t, k) for t in finals]
                prefixes = [c for c, _ in cuts]
                partial = (await default.score(prompt, prefixes)).values
                together = (await default.score(prompt, finals + prefixes)).values  # one scale for both
                partial_abs = (await absolute.score(prompt, prefixes)).values
                cut = [i for i, (_, was_cut) in enumerate(cuts) if was_cut]
                records.append(Record(
                    prompt=p, best_of=n, k=k, leader=best(partial), winner=best(final), top2=top(partial, 2),
                    partial=list(partial), final=list(final), final_abs=list(final_abs),
                    offsets=[together[i] - together[n + i] for i in cut],
                    offsets_abs=[final_abs[i] - partial_abs[i] for i in cut],
                    cut=len(cut),
                ))
        scoring += time.perf_counter() - started
        print(f"prompt {p}: {len(texts)} candidates, {sum(c.completion_tokens for c in candidates)} tokens "
              f"(generating {generating:.0f} s, scoring {scoring:.0f} s so far)", flush=True)
    rows = [summarise([r for r in records if r.best_of == n and r.k == k]) for n in args.best_of for k in args.ks]
    return rows, records


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for n in dict.fromkeys(r["best_of"] for r in rows):
        mine = [r for r in rows if r["best_of"] == n]
        ks = [r["k"] for r in mine]
        left.plot(ks, [r["hit_rate"] for r in mine], marker="o", label=f"best_of {n}: leader is the winner")
        left.plot(ks, [r["top2_rate"] for r in mine], marker="x", linestyle="--", label=f"best_of {n}: winner in top 2")
        right.plot(ks, [r["gain_kept"] for r in mine], marker="o", label=f"best_of {n}: default reward")
        right.plot(ks, [r["gain_kept_abs"] for r in mine], marker="x", linestyle="--", label=f"best_of {n}: style-head")
    for axis, title in ((left, "how often the leader at k wins"), (right, "share of the best-of-N gain kept")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("commit point k (tokens)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8001")
    parser.add_argument("--config", default="deploy/local.yaml")
    parser.add_argument("--reward-model", default=None, help="the one the commit judges with (default: the config's)")
    parser.add_argument("--absolute-reward", default="style-head")
    parser.add_argument("--prompts", type=int, default=len(CALIBRATION_PROMPTS))
    parser.add_argument("--best-of", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", default=None, help="writes <out>.csv, <out>.json, <out>.png")
    parser.add_argument("--policies", metavar="JSON", help="only weigh margin policies over an earlier run's records")
    args = parser.parse_args()
    if args.policies:
        with open(args.policies) as f:
            records = [Record(**r) for r in json.load(f)["records"]]
        for n in args.best_of:
            mine = [r for r in records if r.best_of == n]
            for ks in ([8, 16, 32], [8, 32], [16, 32], [4, 8, 16, 32]):
                for margin in (0.5, 1.0, 1.5, 2.0, 3.0):
                    p = margin_policy(mine, ks, margin)
                    print(f"best_of {n}, commit points {ks}, margin {margin}: mean k {p['mean_k']:.1f}, "
                          f"gain kept {p['gain_kept']:.0%}, leader wins {p['hit_rate']:.0%}")
        return 0
    rows, records = asyncio.run(calibrate(args))
    print("\n| best_of | k | leader wins | winner in top 2 | gain kept (default) | gain kept (style-head) "
          "| partial offset (default) | partial offset (style-head) | cut |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['best_of']} | {r['k']} | {r['hit_rate']:.0%} | {r['top2_rate']:.0%} | {r['gain_kept']:.0%} | "
              f"{r['gain_kept_abs']:.0%} | {r['partial_offset_default']:+.2f} | {r['partial_offset_abs']:+.2f} | "
              f"{r['cut_share']:.0%} |")
    if args.out:
        write_csv(rows, f"{args.out}.csv")
        with open(f"{args.out}.json", "w") as f:
            json.dump({"args": vars(args), "rows": rows, "records": [vars(r) for r in records]}, f)
        plot(rows, f"{args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
