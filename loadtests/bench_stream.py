"""Streams that start early: when the first text arrives, and what committing costs.

    make serve &                                   # prune on :8000 (deploy/local.yaml)
    python -m loadtests.baseline serve &           # vLLM's own server on :8001, same engine settings
    python -m loadtests.bench_stream --prune-url http://127.0.0.1:8000 --vllm-url http://127.0.0.1:8001 \\
        --out docs/perf/stream [--commit-tokens 4 8 16]

For each prompt, back to back, the same chat request (its seed, `max_tokens` 128,
a budget long enough that nothing is cut), each a stream read by a client here:
- best_of 8, `stream_commit: leader` (the configured commit point);
- best_of 8, `stream_commit: select` (text only after selection: the old way);
- best_of 1 through prune, and the same request (no prune fields) to vLLM's server.
Times are the client's: from sending the request to the first non-empty text
chunk, and to `[DONE]`. The final texts are scored here with an absolute reward
model (`style-head`: a text's score does not depend on the others), so the
committed answers compare with the buffered ones: mean reward, and the share of
the best-of-8 gain over best_of 1 that committing keeps. Concurrency 1: the
machine does nothing else (the vLLM server sits idle while prune is measured).
Writes <out>.csv (one row per request) and prints the summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import httpx

from loadtests.baseline import load_reward
from loadtests.prompts import CALIBRATION_PROMPTS
from loadtests.report import write_csv


async def stream_once(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    """One streamed chat request: first-text and total seconds, the text, prune's account."""
    started = time.perf_counter()
    first, text, account = None, "", None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"{url}: {event['error']}")
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first if first is not None else time.perf_counter() - started
                    text += piece
            account = event.get("reranking", account)
    return {"first_s": first, "total_s": time.perf_counter() - started, "text": text, "reranking": account}


def summary(rows: list[dict]) -> list[dict]:
    """Per mode: first text and total (p50, mean), first/total, mean reward."""
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        out.append({
            "mode": mode,
            "requests": len(mine),
            "first_text_p50_s": statistics.median(r["first_s"] for r in mine),
            "first_text_mean_s": statistics.mean(r["first_s"] for r in mine),
            "total_p50_s": statistics.median(r["total_s"] for r in mine),
            "total_mean_s": statistics.mean(r["total_s"] for r in mine),
            "first_over_total_mean": statistics.mean(r["first_s"] / r["total_s"] for r in mine),
            "reward_mean": statistics.mean(r["reward"] for r in mine),
        })
    return out


async def bench(args) -> list[dict]:
    reward = await load_reward(args.config, args.reward_model)
    from service.types import Prompt

    rows = []
    async with httpx.AsyncClient(timeout=600) as client:
        for i, text in enumerate(CALIBRATION_PROMPTS[: args.prompts]):
            messages = [{"role": "user", "content": text}]
            body = {"model": args.model, "messages": messages, "max_tokens": args.max_tokens, "seed": args.seed + 100 * i}
            prune = body | {"latency_budget_ms": 120_000}
            leaders = [(f"best_of 8, leader at {k}", {"policy": "leader", "at_tokens": k}) for k in args.commit_tokens]
            runs = [(mode, args.prune_url, prune | {"best_of": 8, "stream_commit": commit})
                    for mode, commit in leaders or [("best_of 8, leader", "leader")]]
            runs += [
                ("best_of 8, select", args.prune_url, prune | {"best_of": 8, "stream_commit": "select"}),
                ("best_of 1, prune", args.prune_url, prune | {"best_of": 1}),
            ]
            if args.vllm_url:
                runs.append(("best_of 1, vLLM server", args.vllm_url, body))
            for mode, url, request in runs:
                result = await stream_once(client, url, request)
                score = await reward.score(Prompt(messages=tuple(messages), max_tokens=args.max_tokens), [result["text"]])
                commit = (result["reranking"] or {}).get("commit") or {}
                rows.append({"prompt": i, "mode": mode, "first_s": result["first_s"] or result["total_s"],
                             "total_s": result["total_s"], "reward": float(score.values[0]),
                             "commit_tokens": commit.get("at_tokens", ""), "commit_ms": commit.get("at_ms", ""),
                             "chars": len(result["text"])})
            print(f"prompt {i}: " + ", ".join(f"{r['mode']} {r['first_s']:.2f}/{r['total_s']:.2f} s"
                                              for r in rows[-len(runs):]), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prune-url", default="http://127.0.0.1:8000")
    parser.add_argument("--vllm-url", default=None, help="vLLM's own server, for the best_of 1 comparison")
    parser.add_argument("--config", default="deploy/local.yaml", help="for the reward model scoring the answers")
    parser.add_argument("--reward-model", default="style-head", help="an absolute one: scores comparable across calls")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--commit-tokens", type=int, nargs="*", default=[],
                        help="commit points to compare (default: the service's configured one)")
    parser.add_argument("--out", default=None, help="writes <out>.csv")
    args = parser.parse_args()
    rows = asyncio.run(bench(args))
    table = summary(rows)
    print("\n| mode | requests | first text p50 (s) | total p50 (s) | first/total (mean) | reward (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in table:
        print(f"| {row['mode']} | {row['requests']} | {row['first_text_p50_s']:.2f} | {row['total_p50_s']:.2f} | "
              f"{row['first_over_total_mean']:.0%} | {row['reward_mean']:.3f} |")
    by_mode = {row["mode"]: row for row in table}
    select, one = by_mode.get("best_of 8, select"), by_mode.get("best_of 1, prune")
    for leader in [row for row in table if row["mode"].startswith("best_of 8, leader")]:
        if select and one and select["reward_mean"] != one["reward_mean"]:
            kept = (leader["reward_mean"] - one["reward_mean"]) / (select["reward_mean"] - one["reward_mean"])
            print(f"{leader['mode']}: keeps {kept:.0%} of the best-of-8 gain over best_of 1")
    server = by_mode.get("best_of 1, vLLM server")
    if server and one:
        print(f"best_of 1 time to first text, prune / vLLM server: {one['first_text_p50_s'] / server['first_text_p50_s']:.2f}x "
              f"(p50 {one['first_text_p50_s'] * 1000:.0f} / {server['first_text_p50_s'] * 1000:.0f} ms)")
    if args.out:
        write_csv(rows, f"{args.out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
