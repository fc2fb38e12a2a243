"""Pairwise accuracy of reward models on preference pairs, by kind, with length baselines.

    python -m loadtests.eval_rewards                            # held-out hard pairs, default rewards
    python -m loadtests.eval_rewards --pairs service/reward/data/style_pairs.jsonl --split heldout
    python -m loadtests.eval_rewards --config deploy/local.yaml --models style,style-head,slop --csv out.csv
    python -m loadtests.eval_rewards --lamp PATH              # expert judgements (a LAMP clone at PATH)

Each pair is scored the way POST /v1/rewards scores two completions: one call
with [chosen, rejected]. A pair counts as right when chosen scores strictly
higher: ties are wrong. The baselines on the same pairs: "shorter wins" (fewer
words) and "fewer characters wins". `--split heldout` keeps only the prompts
that training holds out (service.reward.pairs.is_held_out), `all` every pair.

`--lamp PATH` scores human judgements instead (service/reward/lamp.py): the
validation side of LAMP's lamp-R split (paragraph pairs of one source, the higher
expert score chosen; never trained on), and the cross-source pairs (other writers'
edits and rankings of texts unrelated to any training paragraph). It prints the
table for all pairs and for the length-matched ones (characters within 10%), and
each model's Spearman correlation with the expert 1-10 scores of the validation
paragraphs, each scored alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from pathlib import Path

from loadtests.report import write_csv
from service.reward.pairs import HARD_PAIRS, HOLDOUT



def read_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row.setdefault("category", path.stem)
                rows.append(row)
    return rows


def baseline(rule: str, chosen: str, rejected: str) -> bool:
    if rule == "shorter wins":
        return len(chosen.split()) < len(rejected.split())
    return len(chosen) < len(rejected)  # fewer characters wins


async def outcomes(models: dict, rows: list[dict]) -> dict[str, list[bool]]:
    """name -> one right/wrong per row, for each model and each length baseline."""
    from service.types import Prompt

    out: dict[str, list[bool]] = {}
    for name, model in models.items():
        await model.start()
        jobs = [(Prompt(text=r["prompt"]), [r["chosen"], r["rejected"]]) for r in rows]
        out[name] = [scores.values[0] > scores.values[1] for scores in await model.score_many(jobs)]
    for rule in ("shorter wins", "fewer characters wins"):
        out[rule] = [baseline(rule, row["chosen"], row["rejected"]) for row in rows]
    return out


def by_category(rows: list[dict], right: dict[str, list[bool]]) -> dict[str, dict[str, list[bool]]]:
    results: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for name, oks in right.items():
        for row, ok in zip(rows, oks):
            results[name][row["category"]].append(ok)
    return results


async def evaluate(models: dict, rows: list[dict]) -> dict[str, dict[str, list[bool]]]:
    """name -> category -> one right/wrong per pair."""
    return by_category(rows, await outcomes(models, rows))


def table(results: dict[str, dict[str, list[bool]]]) -> list[dict]:
    out = []
    for name, by_kind in results.items():
        row = {"scorer": name}
        every = [ok for oks in by_kind.values() for ok in oks]
        row["overall"] = round(sum(every) / len(every), 3)
        row |= {kind: round(sum(oks) / len(oks), 3) for kind, oks in sorted(by_kind.items())}
        row["pairs"] = len(every)
        out.append(row)
    return out


def lamp_rows(root: Path) -> tuple[list[dict], list]:
    """LAMP's validation and cross-source pairs as rows, and the validation paragraphs."""
    from service.reward.train_lamp import split_lamp

    split = split_lamp(root)
    judged = split.val_pairs + split.cross
    names = {"lamp-R": "lamp-R validation", "reannotation": "reannotation", "rankings": "rankings"}
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "category": names[p.source]}
            for p in judged]
    return rows, split.val


async def spearman_by_model(models: dict, rated: list) -> dict[str, float]:
    """Each model's rank correlation with the expert scores, each paragraph scored alone."""
    from service.reward.lamp import spearman
    from service.types import Prompt

    jobs = [(Prompt(text=""), [r.text]) for r in rated]
    out = {}
    for name, model in models.items():
        values = [scores.values[0] for scores in await model.score_many(jobs)]
        out[name] = spearman(values, [r.score for r in rated])
    lengths = [-len(r.text) for r in rated]
    out["fewer characters wins"] = spearman(lengths, [r.score for r in rated])
    return out


def print_table(title: str, rows_out: list[dict]) -> None:
    kinds = [k for k in rows_out[0] if k not in ("scorer", "overall", "pairs")]
    print(title)
    print("| scorer | overall | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 2) + "|")
    for r in rows_out:
        print(f"| {r['scorer']} | {r['overall']:.0%} | " + " | ".join(f"{r[k]:.0%}" for k in kinds) + " |")


def main(argv: list[str] | None = None) -> int:
    from service.config import default_reward_models, load_serve_file
    from service.reward import make_reward_models
    from service.reward.pairs import is_held_out

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="*", type=Path, default=HARD_PAIRS)
    parser.add_argument("--split", choices=["heldout", "all"], default="heldout")
    parser.add_argument("--holdout", type=float, default=HOLDOUT)
    parser.add_argument("--config", help="a deploy/*.yaml file (default: the built-in reward models)")
    parser.add_argument("--models", default="style,style-head,slop")
    parser.add_argument("--lamp", type=Path, help="a clone of salesforce/creativity_eval: score its expert "
                        "judgements (validation and cross-source) instead of --pairs")
    parser.add_argument("--csv")
    args = parser.parse_args(argv)
    configs = load_serve_file(args.config)[1].reward_models if args.config else default_reward_models()
    every = make_reward_models(configs)
    models = {name: every[name] for name in args.models.split(",")}
    if args.lamp is not None:
        from service.reward.lamp import length_matched

        rows, rated = lamp_rows(args.lamp)
        right = asyncio.run(outcomes(models, rows))
        all_pairs = table(by_category(rows, right))
        matched = [i for i, row in enumerate(rows) if length_matched(row["chosen"], row["rejected"])]
        only_matched = table(by_category([rows[i] for i in matched],
                                         {name: [oks[i] for i in matched] for name, oks in right.items()}))
        print_table(f"{len(rows)} expert-judged pairs; ties count as wrong", all_pairs)
        print_table(f"\n{len(matched)} of them length-matched (characters within 10%)", only_matched)
        rows_out = [row | {"pairs_set": "all"} for row in all_pairs] + [
            row | {"pairs_set": "length-matched"} for row in only_matched]
        print(f"\nSpearman correlation with the expert scores of {len(rated)} validation paragraphs:")
        for name, rho in asyncio.run(spearman_by_model(models, rated)).items():
            print(f"- {name}: {rho:.3f}")
    else:
        rows = read_rows(args.pairs)
        if args.split == "heldout":
            rows = [r for r in rows if is_held_out(r["prompt"], args.holdout)]
        rows_out = table(asyncio.run(evaluate(models, rows)))
        print_table(f"{len(rows)} pairs ({args.split}); ties count as wrong", rows_out)
    if args.csv:
        write_csv(rows_out, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
