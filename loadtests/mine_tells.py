"""A model's own tells: which of the slop reward's phrases its candidates actually use.

    python -m loadtests.mine_tells --out docs/perf/tells_smollm2

A ban list is only worth its place in the engine's 128-sequence limit if the model
reaches for those words. Through the service's own request path in-process
(`local_reranker`, the embedded default of deploy/local.yaml), each of the 40
mining prompts (none of them a benchmark prompt, so a list mined here is judged
elsewhere) is asked as a chat request at best_of 8, pruning off, and every
candidate is searched for every phrase of the slop reward's lists (slop phrases
outside their literal sense, hedges, openers, closers, filler connectives). It
prints the phrases by the share of candidates using them and, as YAML, a ban list
of those used by at least --min-share of the candidates. Writes <out>.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from loadtests.bench_chosen import ask_unhurried
from loadtests.prompts import MINING_PROMPTS
from loadtests.report import write_csv


def tell_patterns() -> list[tuple[str, str, object, str | None]]:
    """(phrase, kind, compiled pattern, literal-sense stem) for every phrase the slop reward counts."""
    from service.reward import slop

    rows = [(p, "slop", pattern, stem) for p, pattern, stem in
            zip(slop.SLOP_PHRASES, slop.SLOP_PATTERNS, slop.PHRASE_STEMS)]
    for kind, phrases, patterns in (("hedge", slop.HEDGES, slop.HEDGE_PATTERNS),
                                    ("opener", slop.SYCOPHANTIC_OPENERS, slop.OPENER_PATTERNS),
                                    ("closer", slop.SERVICE_CLOSERS, slop.CLOSER_PATTERNS),
                                    ("filler", slop.FILLER_CONNECTIVES, slop.FILLER_PATTERNS)):
        rows += [(p, kind, pattern, None) for p, pattern in zip(phrases, patterns)]
    return rows


def count_tells(texts: list[str]) -> list[dict]:
    from service.reward.slop import _is_literal

    rows = []
    for phrase, kind, pattern, stem in tell_patterns():
        hits = [sum(1 for m in pattern.finditer(t.lower()) if not _is_literal(t.lower(), m.start(), m.end(), stem))
                for t in texts]
        if any(hits):
            rows.append({"phrase": phrase, "kind": kind, "candidates_using": sum(1 for h in hits if h),
                         "share": round(sum(1 for h in hits if h) / len(texts), 4), "occurrences": sum(hits)})
    return sorted(rows, key=lambda r: (-r["share"], r["phrase"]))


async def sample(args) -> list[str]:
    from service.config import load_serve_file
    from service.serving import local_reranker

    _, config = load_serve_file(args.config)
    reranker = await local_reranker(config)
    texts = []
    for i, prompt in enumerate(MINING_PROMPTS[: args.prompts]):
        _, selection = await ask_unhurried(reranker, prompt, args.seed + 100 * i, best_of=args.best_of,
                                           max_tokens=args.max_tokens, reward_model="slop")
        texts += [s.candidate.text for s in selection.scored]
        print(f"prompt {i}: {len(texts)} candidates", file=sys.stderr, flush=True)
    reranker.generator.shutdown()
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml")
    parser.add_argument("--prompts", type=int, default=len(MINING_PROMPTS))
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--min-share", type=float, default=0.01, help="ban phrases used by this share of candidates")
    parser.add_argument("--out")
    parser.add_argument("--texts", help="also write the candidates here, one JSON string a line")
    args = parser.parse_args(argv)
    texts = asyncio.run(sample(args))
    if args.texts:
        with open(args.texts, "w") as f:
            f.writelines(json.dumps(t) + "\n" for t in texts)
    rows = count_tells(texts)
    print(f"{len(texts)} candidates; phrases by share of candidates using them:")
    for r in rows:
        print(f"  {r['share']:7.2%}  {r['occurrences']:4d}  {r['kind']:7s} {r['phrase']}")
    print("bans:\n  tells:\n    words:")
    for r in rows:
        if r["share"] >= args.min_share:
            print(f"      - {r['phrase']!r}")
    if args.out:
        write_csv(rows, f"{args.out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
