"""Calibration of pruning: how well a reward model's score of a partial text foretells its final score.

    python -m loadtests.calibrate_pruning --out docs/perf/pruning_calibration        # sample, cut, score
    python -m loadtests.calibrate_pruning --replay docs/perf/pruning_calibration.json # weigh schedules only

For each tuning prompt (chat, the config's `max_tokens` default, the same
sampling, bans and seeds as a request of best_of N through `Reranker.plan`),
N candidates are sampled to the end in-process without pruning, cut at k tokens
(the model's tokenizer; one no longer than k had finished and is whole) and
scored, prefixes and finals, with the config's default reward model. Per k:

- `noise`: how uncertain a prefix's reward leaves its final reward, in units of
  prefix reward (the residual spread of final about its regression on prefix,
  divided by the slope; see `noise()`). This is the yardstick of the confidence
  rule (service.pruning); it goes into the config as `pruning.noise`;
- `rank_corr`: Spearman's correlation of prefix and final scores within a prompt.

`--replay` runs the service's own pruning rule (`service.pruning.Schedule`) over
the recorded candidates, which is exact for the candidates it keeps (same seeds,
same texts): gain kept over best_of 1 against best_of N unpruned, and tokens,
for a grid of schedules. This is where a schedule is chosen; the prompts are the
tuning prompts only (`loadtests.prompts.TUNING_PROMPTS`). The figures that are
reported come from `loadtests.bench_compute` on the held-out prompts, through
the real request path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from loadtests.prompts import TUNING_PROMPTS

KS = (2, 4, 6, 8, 12, 16, 24, 32, 48)


def prefix(tokenizer, text: str, k: int) -> tuple[str, bool]:
    """The first k tokens of a text, and whether it had more (was cut)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= k:
        return text, False
    return tokenizer.decode(ids[:k], skip_special_tokens=True), True


async def sample(args) -> list[dict]:
    """One record per prompt: each candidate's tokens, final score, and score at each k."""
    from transformers import AutoTokenizer

    from service.config import load_serve_file
    from service.embedded import resolve_model_path
    from service.protocol import ChatCompletionRequest
    from service.serving import local_reranker
    from service.types import Deadline

    _, config = load_serve_file(args.config)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.generator.model))
    reranker = await local_reranker(config)
    reward = (await reranker.catalog.current()).get(config.default_reward_model)
    records = []
    for p, text in enumerate(TUNING_PROMPTS[: args.prompts]):
        request = ChatCompletionRequest.model_validate({
            "model": reranker.generator.model_name, "messages": [{"role": "user", "content": text}],
            "best_of": args.best_of, "seed": args.seed + 100 * p, "pruning": False,
        })
        plan = await reranker.plan(request)
        started = time.perf_counter()
        candidates = [c async for c in reranker.generator.generate(plan.prompt, plan.sampling, args.best_of,
                                                                    Deadline.after_ms(10**8))]
        candidates.sort(key=lambda c: c.index)
        texts = [c.text for c in candidates]
        generating = time.perf_counter() - started
        record = {"prompt": p, "tokens": [c.completion_tokens for c in candidates],
                  "final": list((await reward.score(plan.prompt, texts)).values), "partial": {}, "cut": {}}
        for k in KS:
            cuts = [prefix(tokenizer, t, k) for t in texts]
            record["partial"][k] = list((await reward.score(plan.prompt, [c for c, _ in cuts])).values)
            record["cut"][k] = [was_cut for _, was_cut in cuts]
        records.append(record)
        print(f"prompt {p}: {sum(record['tokens'])} tokens in {generating:.1f} s", flush=True)
    reranker.generator.shutdown()
    return records


def noise(records: list[dict]) -> list[dict]:
    """Per k, over the candidates really cut at k, each prompt's mean taken out (what all
    of a prompt's candidates share does not change who wins):

    - `slope`: the regression slope of final on prefix reward: how much of a
      prefix's lead its final text keeps, on average;
    - `residual`: the spread of the final reward about that prediction;
    - `noise` = residual / slope: the same uncertainty in units of prefix reward,
      the scale the pruning rule compares prefixes on. A lead of one `noise` in
      prefix reward is a predicted final lead of one residual spread;
    - `rank_corr`: Spearman's correlation of prefix and final rewards within a prompt."""
    rows = []
    for k in KS:
        xs, ys, correlations = [], [], []
        for r in records:
            cut = [i for i, c in enumerate(r["cut"][k]) if c]
            if len(cut) < 2:
                continue
            prefix_scores, finals = [r["partial"][k][i] for i in cut], [r["final"][i] for i in cut]
            mx, my = statistics.fmean(prefix_scores), statistics.fmean(finals)
            xs += [x - mx for x in prefix_scores]
            ys += [y - my for y in finals]
            correlations.append(spearman(prefix_scores, finals))
        slope = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
        residual = statistics.pstdev([y - slope * x for x, y in zip(xs, ys)])
        rows.append({"k": k, "slope": round(slope, 3), "residual": round(residual, 3),
                     "noise": round(residual / max(slope, 0.01), 3),
                     "rank_corr": round(statistics.fmean(correlations), 3),
                     "cut_share": round(statistics.fmean(c for r in records for c in r["cut"][k]), 3)})
    return rows


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(xs):
        order = sorted(range(len(xs)), key=xs.__getitem__)
        out = [0.0] * len(xs)
        for rank, i in enumerate(order):
            out[i] = float(rank)
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else 0.0


def replay(record: dict, n: int, checkpoints: list[int], rule, first_wave: int | None = None,
           grow_at: float = 0.0, noise_of: dict[int, float] | None = None) -> tuple[int, float]:
    """One prompt's first n candidates under a schedule: (tokens generated, final reward of the answer).

    `rule(k, ranked, room, best_seen)` gives the victims at checkpoint k, as the
    service's chooser does. With `first_wave`, only that many start; at the first
    checkpoint the rest are drawn only if the first wave's rewards spread by more
    than `grow_at` times the noise there (`noise_of[k]`), and go through the same
    checkpoints, judged against the best seen at each. Only the first candidate
    running at the end stays once pruning would leave none (floor 1).
    """
    from service.pruning import spread

    waves = [list(range(n))] if not first_wave or first_wave >= n else [list(range(first_wave))]
    spent, kept, seen = {}, [], {}  # seen: k -> best reward there so far
    for w, wave in enumerate(waves):
        alive, finished = set(wave), set()
        for k in checkpoints:
            finished |= {i for i in alive if not record["cut"][k][i]}
            alive -= finished
            ranked = sorted(((i, record["partial"][k][i], False) for i in alive), key=lambda t: (-t[1], t[0]))
            if not ranked:
                break
            drawing = w == 0 and len(wave) < n and k == checkpoints[0]
            draw = n - len(wave) if drawing and spread(ranked) > grow_at * noise_of[k] else 0
            room = len(alive) + len(finished) + len(kept) + draw - 1
            for v in rule(k, ranked, room, seen.get(k)):
                spent[v] = k
                alive.discard(v)
            seen[k] = max(seen.get(k, float("-inf")), ranked[0][1])
            if draw:
                waves.append(list(range(len(wave), n)))
        kept += sorted(alive | finished)
    for i in kept:
        spent[i] = record["tokens"][i]
    chosen = max(kept, key=lambda i: (record["final"][i], -i))
    return sum(spent.values()), record["final"][chosen]


def weigh(records: list[dict], n: int, checkpoints, rule, **waves) -> dict:
    """Gain kept over best_of 1 (candidate 0) against unpruned best_of n (a ratio of means), and the tokens share."""
    full_gain = statistics.fmean(max(r["final"][:n]) - r["final"][0] for r in records)
    results = [replay(r, n, checkpoints, rule, **waves) for r in records]
    gain = statistics.fmean(final - r["final"][0] for (_, final), r in zip(results, records))
    tokens = sum(t for t, _ in results) / sum(sum(r["tokens"][:n]) for r in records)
    return {"gain_kept": gain / full_gain if full_gain else float("nan"), "tokens": tokens}


def fraction_rule(share: float):
    from service.pruning import victim_count

    return lambda k, ranked, room, best_seen: [i for i, _, _ in ranked[::-1]][:min(room, victim_count(
        len(ranked), 0, share, 1))]


def confidence_rule(confidence: float, noise_of: dict[int, float]):
    from service.pruning import confident_victims

    return lambda k, ranked, room, best_seen: confident_victims(ranked, noise_of[k], confidence, room, best_seen)


def grid(records: list[dict]) -> None:
    """Gain kept and tokens of today's fraction rule and its neighbours, and of the
    confidence rule by confidence, with and without adaptive N, at best_of 8, 16, 32."""
    noise_of = {row["k"]: row["noise"] for row in noise(records)}
    for n in (8, 16, 32):
        for ks, share in (([8, 24], 0.5), ([8, 16, 24], 0.5), ([16, 32], 0.75), ([12, 24], 0.75), ([16], 0.9)):
            r = weigh(records, n, ks, fraction_rule(share))
            print(f"best_of {n} fraction {ks} x{share}: gain kept {r['gain_kept']:.2f}, tokens {r['tokens']:.2f}")
        for ks in ([4, 8, 12, 16, 24, 32, 48], [8, 12, 16, 24, 32], [8, 16, 24, 32]):
            for c in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0):
                r = weigh(records, n, ks, confidence_rule(c, noise_of))
                print(f"best_of {n} confidence {ks} c={c}: gain kept {r['gain_kept']:.2f}, tokens {r['tokens']:.2f}")
                for wave in (4, 8):
                    for grow in (0.1, 0.2, 0.3):
                        if wave < n:
                            r = weigh(records, n, ks, confidence_rule(c, noise_of), first_wave=wave, grow_at=grow,
                                      noise_of=noise_of)
                            print(f"best_of {n} confidence {ks} c={c} first {wave} grow {grow}: "
                                  f"gain kept {r['gain_kept']:.2f}, tokens {r['tokens']:.2f}")


def normalise(records: list[dict]) -> list[dict]:
    """Records as written to JSON (string keys) back to int keys."""
    for r in records:
        r["partial"] = {int(k): v for k, v in r["partial"].items()}
        r["cut"] = {int(k): v for k, v in r["cut"].items()}
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/local.yaml")
    parser.add_argument("--prompts", type=int, default=len(TUNING_PROMPTS))
    parser.add_argument("--best-of", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="docs/perf/pruning_calibration", help="writes <out>.json")
    parser.add_argument("--replay", metavar="JSON", help="only weigh schedules over an earlier run's records")
    args = parser.parse_args()
    if args.replay:
        with open(args.replay) as f:
            records = normalise(json.load(f)["records"])
    else:
        records = asyncio.run(sample(args))
    table = noise(records)
    print("| k | slope | residual | noise | rank corr | cut |\n|---:|---:|---:|---:|---:|---:|")
    for row in table:
        print(f"| {row['k']} | {row['slope']} | {row['residual']} | {row['noise']} | {row['rank_corr']} | "
              f"{row['cut_share']:.0%} |")
    if args.replay:
        grid(records)
    else:
        with open(f"{args.out}.json", "w") as f:
            json.dump({"args": vars(args), "noise": table, "records": records}, f)
        print(f"wrote {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
