"""Latency of best-of-N at concurrency 1: through prune's HTTP API, or the same
request path driven in-process (no Ray, no HTTP).

    python -m loadtests.bench_latency --inprocess deploy/local.yaml       # the Reranker in this process
    python -m loadtests.bench_latency --url http://127.0.0.1:8000         # a running service

Both send the same request bodies (same prompts, seeds, budget) to the same
code: the service's routes call `Reranker.plan` and `Reranker.run`, and so does
the in-process mode, built from the deploy file by `local_reranker` — the same
generator, reward models, limits and pruning as `make serve` runs. The
difference between the two is the serving stack (Ray, HTTP, separate replicas).
Prints a table and, with --csv, writes one row per (mode, best_of).
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


def bodies(model: str, best_of: int, max_tokens: int, repeats: int) -> list[dict]:
    """The requests of one cell, the same for both modes."""
    return [
        {"model": model, "prompt": prompt, "best_of": best_of, "max_tokens": max_tokens, "seed": 1000 * r + i,
         "latency_budget_ms": 120000}
        for r in range(repeats)
        for i, prompt in enumerate(PROMPTS)
    ]


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
        for body in bodies(model, best_of, max_tokens, repeats):
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
    from service.protocol import CompletionRequest
    from service.serving import local_reranker

    _, config = load_serve_file(config_path)
    t = time.perf_counter()
    reranker = await local_reranker(config)
    print(f"engine ready in {time.perf_counter() - t:.1f} s", flush=True)
    model = reranker.generator.model_name

    async def answer(body: dict) -> None:
        await reranker.run(await reranker.plan(CompletionRequest.model_validate(body)))

    # Warm-up, like the service's first request after start.
    await answer({"model": model, "prompt": "Hello", "best_of": 1, "max_tokens": 8})
    rows = []
    for best_of in best_ofs:
        seconds = []
        for body in bodies(model, best_of, max_tokens, repeats):
            t = time.perf_counter()
            await answer(body)
            seconds.append(time.perf_counter() - t)
        rows.append(summarize("inprocess", best_of, seconds))
        print(rows[-1], flush=True)
    reranker.generator.shutdown()
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
