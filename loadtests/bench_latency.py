"""Latency of best-of-N at concurrency 1: through prune's HTTP API, or the same
work done directly on the engine in-process (no Ray, no HTTP).

    python -m loadtests.bench_latency --inprocess deploy/local.yaml       # engine in-process
    python -m loadtests.bench_latency --url http://127.0.0.1:8000         # a running service

Both run the same prompts with the same seeds: best_of candidates sampled as
separate engine requests, scored by the config's default reward, best returned. Prints a
table and, with --csv, writes one row per (mode, best_of).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request

from loadtests.prompts import PROMPTS as ALL_PROMPTS
from loadtests.report import write_csv

PROMPTS = ALL_PROMPTS[:3]


def summarize(mode: str, best_of: int, seconds: list[float]) -> dict:
    return {
        "mode": mode,
        "best_of": best_of,
        "runs": len(seconds),
        "p50_s": round(statistics.median(seconds), 3),
        "mean_s": round(statistics.fmean(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
    }


def bench_http(url: str, model: str, best_ofs: list[int], max_tokens: int, repeats: int) -> list[dict]:
    rows = []
    for best_of in best_ofs:
        seconds = []
        for r in range(repeats):
            for i, prompt in enumerate(PROMPTS):
                body = {
                    "model": model,
                    "prompt": prompt,
                    "best_of": best_of,
                    "max_tokens": max_tokens,
                    "seed": 1000 * r + i,
                    "latency_budget_ms": 120000,
                }
                req = urllib.request.Request(
                    f"{url}/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"}
                )
                t = time.perf_counter()
                with urllib.request.urlopen(req, timeout=300) as resp:
                    json.loads(resp.read())
                seconds.append(time.perf_counter() - t)
        rows.append(summarize("http", best_of, seconds))
        print(rows[-1], flush=True)
    return rows


async def bench_inprocess(config_path: str, best_ofs: list[int], max_tokens: int, repeats: int) -> list[dict]:
    from service.config import load_serve_file
    from service.generator import make_generator
    from service.reward import make_reward_models
    from service.selection import best_of_n
    from service.types import Deadline, Prompt, SamplingSpec

    _, config = load_serve_file(config_path)
    t = time.perf_counter()
    generator = make_generator(config.generator)
    await generator.start()
    print(f"engine ready in {time.perf_counter() - t:.1f} s", flush=True)
    reward = make_reward_models(config.reward_models)[config.default_reward_model]
    await best_of_n(  # warm-up, like the service's first request after start
        generator, reward, Prompt(text="Hello"), SamplingSpec(max_tokens=8), best_of=1, n=1, deadline=Deadline.after_ms(60000)
    )
    rows = []
    for best_of in best_ofs:
        seconds = []
        for r in range(repeats):
            for i, text in enumerate(PROMPTS):
                t = time.perf_counter()
                await best_of_n(
                    generator,
                    reward,
                    Prompt(text=text),
                    SamplingSpec(max_tokens=max_tokens, seed=1000 * r + i),
                    best_of=best_of,
                    n=1,
                    deadline=Deadline.after_ms(120000),
                )
                seconds.append(time.perf_counter() - t)
        rows.append(summarize("inprocess", best_of, seconds))
        print(rows[-1], flush=True)
    generator.shutdown()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="base URL of a running prune service")
    where.add_argument("--inprocess", metavar="CONFIG", help="deploy/*.yaml whose generator to build in-process")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--best-of", default="1,4,8")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the prompt set")
    parser.add_argument("--csv", help="write the rows here")
    args = parser.parse_args()
    best_ofs = [int(x) for x in args.best_of.split(",")]
    if args.url:
        rows = bench_http(args.url.rstrip("/"), args.model, best_ofs, args.max_tokens, args.repeats)
    else:
        rows = asyncio.run(bench_inprocess(args.inprocess, best_ofs, args.max_tokens, args.repeats))
    if args.csv:
        write_csv(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
