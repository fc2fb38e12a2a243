"""Branching from good prefixes (TreeBoN-style) against pruning alone, at the same tokens.

    python -m loadtests.measure_branching --out docs/perf/branching

Does continuing the best partial candidates with new seeds find better texts than
finishing more of the fresh ones? For each tuning prompt (`TUNING_PROMPTS`; chat,
the config's `max_tokens` default, the same sampling, bans and seeds as a request
through `Reranker.plan`), in-process:

1. 8 fresh candidates are sampled to the end and cut at `k` tokens (the model's
   tokenizer); prefixes and finals are scored with the default reward model;
2. the two best prefixes are each continued `--branches` times from their k
   tokens with new seeds (the prompt's chat tokens plus the prefix's tokens as
   the prompt: with prefix caching the shared part is not computed again).

Two schedules then spend the same tokens, 8 candidates to k tokens and 6 to the end:

- `fresh`: keep the 6 best prefixes and finish them;
- `branch`: keep the 2 best, finish them, and finish their 2 x branches
  continuations (with --branches 2: 6 finished texts as well).

Reported: each schedule's gain over candidate 0 (best_of 1), the paired
difference branch - fresh with a 95% bootstrap interval over prompts, and
tokens. Writes <out>.json (every prompt's figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import replace

from loadtests.calibrate_pruning import prefix
from loadtests.prompts import HELD_OUT_PROMPTS, TUNING_PROMPTS

PROMPT_SETS = {"tuning": TUNING_PROMPTS, "held-out": HELD_OUT_PROMPTS}

FRESH = 8  # candidates screened at k tokens, in both schedules
LEADERS = 2  # prefixes the branch schedule continues


async def measure(args) -> list[dict]:
    from transformers import AutoTokenizer

    from service.config import load_serve_file
    from service.embedded import resolve_model_path
    from service.protocol import ChatCompletionRequest
    from service.serving import local_reranker
    from service.types import Deadline, Prompt

    _, config = load_serve_file(args.config)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.generator.model))
    reranker = await local_reranker(config)
    generator = reranker.generator
    reward = (await reranker.catalog.current()).get(config.default_reward_model)
    records = []
    for p, text in enumerate(PROMPT_SETS[args.prompt_set][: args.prompts]):
        request = ChatCompletionRequest.model_validate({
            "model": generator.model_name, "messages": [{"role": "user", "content": text}],
            "best_of": FRESH, "seed": args.seed + 100 * p, "pruning": False,
        })
        plan = await reranker.plan(request)
        started = time.perf_counter()
        fresh = sorted([c async for c in generator.generate(plan.prompt, plan.sampling, FRESH,
                                                            Deadline.after_ms(10**8))], key=lambda c: c.index)
        cuts = [prefix(tokenizer, c.text, args.k) for c in fresh]
        prefix_scores = (await reward.score(plan.prompt, [cut for cut, _ in cuts])).values
        # The leaders among the candidates that ran past k tokens: those are the ones with a prefix to branch from.
        leaders = sorted((i for i in range(FRESH) if cuts[i][1]), key=lambda i: (-prefix_scores[i], i))[:LEADERS]
        # The prompt's tokens as the generator makes them (service.generator.vllm).
        chat = tokenizer.apply_chat_template([dict(m) for m in plan.prompt.messages], add_generation_prompt=True,
                                             tokenize=False)
        chat_ids = tokenizer.encode(chat, add_special_tokens=False)
        branches = []
        for j in leaders:
            head = tokenizer.encode(fresh[j].text, add_special_tokens=False)[: args.k]
            continued = Prompt(token_ids=tuple(chat_ids) + tuple(head), max_tokens=plan.prompt.max_tokens)
            sampling = replace(plan.sampling, max_tokens=plan.sampling.max_tokens - args.k,
                               seed=args.seed + 100 * p + 10_000 * (j + 1))
            async for c in generator.generate(continued, sampling, args.branches, Deadline.after_ms(10**8)):
                branches.append({"leader": j, "text": tokenizer.decode(head, skip_special_tokens=True) + c.text,
                                 "tokens": c.completion_tokens})
        finals = (await reward.score(plan.prompt, [c.text for c in fresh] + [b["text"] for b in branches])).values
        record = {
            "prompt": p, "tokens": [c.completion_tokens for c in fresh], "cut": [was_cut for _, was_cut in cuts],
            "prefix": list(prefix_scores), "final": list(finals[:FRESH]), "leaders": leaders,
            "branches": [{"leader": b["leader"], "tokens": b["tokens"], "final": f}
                         for b, f in zip(branches, finals[FRESH:])],
        }
        records.append(record)
        print(f"prompt {p}: {time.perf_counter() - started:.1f} s", flush=True)
    generator.shutdown()
    return records


def schedules(record: dict, k: int) -> dict[str, tuple[float, int]]:
    """Per schedule: (gain over candidate 0, tokens)."""
    tokens, final, first = record["tokens"], record["final"], record["final"][0]
    # Candidates that finished within k tokens are whole already: both schedules keep them.
    whole = {i for i, was_cut in enumerate(record["cut"]) if not was_cut}
    order = sorted((i for i in range(len(tokens)) if i not in whole), key=lambda i: (-record["prefix"][i], i))

    def kept(ids) -> tuple[float, int]:
        spent = sum(tokens[i] if i in ids else min(tokens[i], k) for i in range(len(tokens)))
        return max(final[i] for i in ids) - first, spent

    fresh = kept(whole | set(order[: LEADERS + len(record["branches"])]))
    pruned = kept(whole | set(record["leaders"]))
    branch_best = max([b["final"] for b in record["branches"]], default=float("-inf"))
    branch = (max(pruned[0], branch_best - first), pruned[1] + sum(b["tokens"] for b in record["branches"]))
    return {"best_of_8": (max(final) - first, sum(tokens)), "fresh": fresh, "branch": branch,
            f"top_{LEADERS}_only": pruned}


def report(records: list[dict], k: int) -> list[str]:
    per = [schedules(r, k) for r in records]
    lines = ["| schedule | gain over best_of 1 | tokens per request |", "|---|---:|---:|"]
    for name in per[0]:
        lines.append(f"| {name} | {statistics.fmean(s[name][0] for s in per):+.2f} | "
                     f"{statistics.fmean(s[name][1] for s in per):.0f} |")
    diffs = [s["branch"][0] - s["fresh"][0] for s in per]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choice(diffs) for _ in diffs) for _ in range(2000))
    lines.append(f"\nbranch - fresh: {statistics.fmean(diffs):+.2f} [{means[50]:+.2f}, {means[1949]:+.2f}] "
                 f"(95% bootstrap over {len(diffs)} prompts); branch ahead on "
                 f"{sum(d > 0 for d in diffs)}, behind on {sum(d < 0 for d in diffs)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml")
    parser.add_argument("--prompt-set", choices=list(PROMPT_SETS), default="tuning",
                        help="held-out: confirm a schedule chosen on the tuning prompts, never tune on it")
    parser.add_argument("--prompts", type=int, default=None, help="the first so many of the set (default: all)")
    parser.add_argument("--k", type=int, default=16, help="tokens at which prefixes are judged and branched")
    parser.add_argument("--branches", type=int, default=2, help="new continuations of each of the 2 leaders")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="loadtests/results/branching", help="writes <out>.json")
    parser.add_argument("--report", metavar="JSON", help="only report an earlier run")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        records, k = saved["records"], saved["args"]["k"]
    else:
        records, k = asyncio.run(measure(args)), args.k
        with open(f"{args.out}.json", "w") as f:
            json.dump({"args": vars(args), "records": records}, f)
    print("\n".join(report(records, k)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
