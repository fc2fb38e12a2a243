"""Side by side, same machine, same model, one run: prune's service against a
baseline on vLLM's own OpenAI server (loadtests/baseline.py).

    python -m loadtests.baseline serve &                 # vLLM's server on :8001
    make serve &                                         # prune on :8000
    python -m loadtests.compare --prune-url http://127.0.0.1:8000 --vllm-url http://127.0.0.1:8001

Baselines (--baseline):
- `reranker` (default): the same work. prune's own request path (`Reranker.plan`
  and `.run`) in this process, with the same config — reward models, limits,
  budgets, pruning — but generating on vLLM's server (generator kind `openai`).
  What differs is only the serving: prune's Ray app with the engine in a
  replica, against a client-side loop over vLLM's HTTP server.
- `naive`: what a user would do without prune: N concurrent requests to vLLM's
  server, scored here with the same reward model, no pruning, no budget.

Both sides get the same chat requests (prompts, seeds, budgets). Two parts:

1. latency at concurrency 1 for best_of 1, 4, 8;
2. goodput at a fixed latency SLO, stepping concurrency: closed-loop clients for
   a fixed time, counting answers that arrived within the SLO. The SLO is sent as
   `latency_budget_ms` (the naive baseline has no such thing and waits for all N).

Prints the tables and the ratios prune / baseline; writes <out>.csv and <out>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

from loadtests.baseline import client_best_of, load_reward
from loadtests.prompts import PROMPTS as ALL_PROMPTS
from loadtests.report import write_csv

PROMPTS = ALL_PROMPTS[:6]


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]


# What prune's answers said about themselves, per load level: (stopped_early, effective_best_of).
RERANKING: list[tuple[bool, int]] = []


def chat_body(model: str, i: int, *, best_of: int, max_tokens: int, budget_ms: int, reward_model=None) -> dict:
    """Request i, the same for prune and the baselines."""
    body = {"model": model, "messages": messages(i), "max_tokens": max_tokens, "best_of": best_of,
            "seed": 1000 * i, "latency_budget_ms": budget_ms}
    return body | ({"reward_model": reward_model} if reward_model else {})


class Refused(Exception):
    """A 429/503 with Retry-After: the client waits that long before its next request."""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = retry_after_s


async def prune_once(client, url, body) -> float:
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/chat/completions", json=body)
    if response.status_code in (429, 503):
        raise Refused(float(response.headers.get("retry-after-ms", 0)) / 1000
                      or float(response.headers.get("retry-after", 1)))
    response.raise_for_status()
    reranking = response.json()["reranking"]
    RERANKING.append((reranking["stopped_early"], reranking["effective_best_of"]))
    return time.perf_counter() - started


class RerankerBaseline:
    """prune's Reranker in this process, the config's everything, generating on vLLM's server."""

    def __init__(self, reranker):
        self.reranker = reranker

    @classmethod
    async def start(cls, config_path: str, vllm_url: str, model: str) -> "RerankerBaseline":
        from service.config import load_serve_file, parse_config
        from service.serving import local_reranker

        _, config = load_serve_file(config_path)
        args = config.model_dump(mode="json") | {
            "generator": {"kind": "openai", "url": vllm_url, "served_model_name": model,
                          "max_model_len": config.generator.max_model_len}}
        return cls(await local_reranker(parse_config(args)))

    async def once(self, body: dict) -> float:
        from service.protocol import ChatCompletionRequest

        started = time.perf_counter()
        plan = await self.reranker.plan(ChatCompletionRequest.model_validate(body))
        await self.reranker.run(plan)
        return time.perf_counter() - started


class NaiveBaseline:
    """N concurrent requests to vLLM's server, scored here: no pruning, no budget."""

    def __init__(self, client, url, reward):
        self.client, self.url, self.reward = client, url, reward

    async def once(self, body: dict) -> float:
        pick = await client_best_of(self.client, self.url, body["model"], self.reward, body["messages"],
                                    best_of=body["best_of"], max_tokens=body["max_tokens"], seed=body["seed"])
        return pick.seconds


async def closed_loop(call, users: int, seconds: float) -> list[tuple[float, bool]]:
    """`users` clients sending one request after another for `seconds`: (latency, ok) each.
    A refused client waits its Retry-After first, as OpenAI's SDK does."""
    results: list[tuple[float, bool]] = []
    stop_at = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def user():
        while time.perf_counter() < stop_at:
            i = next(counter)
            started = time.perf_counter()
            try:
                results.append((await call(i), True))
            except Refused as refused:
                results.append((time.perf_counter() - started, False))
                await asyncio.sleep(min(refused.retry_after_s, max(0.0, stop_at - time.perf_counter())))
            except Exception:
                results.append((time.perf_counter() - started, False))

    await asyncio.gather(*(user() for _ in range(users)))
    return results


async def compare(args) -> list[dict]:
    rows = []
    async with httpx.AsyncClient(timeout=600) as client:
        if args.baseline == "naive":
            baseline = NaiveBaseline(client, args.vllm_url, await load_reward(args.config, args.reward))
        else:
            baseline = await RerankerBaseline.start(args.config, args.vllm_url, args.model)
        for url in (args.prune_url, args.vllm_url):  # warm both
            await client.get(f"{url}/v1/models")
        warm = chat_body(args.model, 0, best_of=2, max_tokens=8, budget_ms=60000)
        await prune_once(client, args.prune_url, warm)
        await baseline.once(warm)

        def body(i, best_of, budget_ms):
            return chat_body(args.model, i, best_of=best_of, max_tokens=args.max_tokens, budget_ms=budget_ms,
                             reward_model=args.reward)

        for best_of in args.best_of if "latency" in args.parts else []:
            for system in ("prune", "baseline"):
                seconds = []
                for i in range(args.requests):
                    request = body(i, best_of, 120000)
                    if system == "prune":
                        seconds.append(await prune_once(client, args.prune_url, request))
                    else:
                        seconds.append(await baseline.once(request))
                rows.append({"part": "latency c=1", "system": system, "best_of": best_of, "users": 1,
                             "requests": len(seconds), "p50_s": round(statistics.median(seconds), 3),
                             "mean_s": round(statistics.fmean(seconds), 3), "goodput_per_s": "", "on_time": "",
                             "cut_short": "", "effective_best_of": ""})
                print(rows[-1], flush=True)

        slo_s = args.slo_ms / 1000
        for users in args.users if "goodput" in args.parts else []:
            for system in ("prune", "baseline"):
                if system == "prune":
                    async def call(i):
                        return await prune_once(client, args.prune_url, body(i, args.load_best_of, args.slo_ms))
                else:
                    async def call(i):
                        return await baseline.once(body(i, args.load_best_of, args.slo_ms))
                RERANKING.clear()
                results = await closed_loop(call, users, args.seconds)
                on_time = sum(ok and s <= slo_s for s, ok in results)
                latencies = [s for s, ok in results if ok]
                rows.append({"part": f"goodput slo={args.slo_ms}ms", "system": system, "best_of": args.load_best_of,
                             "users": users, "requests": len(results),
                             "p50_s": round(statistics.median(latencies), 3) if latencies else "",
                             "mean_s": round(statistics.fmean(latencies), 3) if latencies else "",
                             "goodput_per_s": round(on_time / args.seconds, 3),
                             "on_time": round(on_time / len(latencies), 3) if latencies else 0,  # of the answers
                             "refused": len(results) - len(latencies),
                             # prune only: how it kept the budget
                             "cut_short": round(statistics.fmean(c for c, _ in RERANKING), 3) if RERANKING else "",
                             "effective_best_of": round(statistics.fmean(b for _, b in RERANKING), 2)
                             if RERANKING else ""})
                print(rows[-1], flush=True)
    return rows


def ratios(rows: list[dict]) -> list[str]:
    by = {(r["part"], r["best_of"], r["users"], r["system"]): r for r in rows}
    lines = []
    for (part, best_of, users, system), r in by.items():
        if system != "prune":
            continue
        base = by[(part, best_of, users, "baseline")]
        if part.startswith("latency"):
            lines.append(f"c=1 best_of {best_of}: p50 prune {r['p50_s']} s / baseline {base['p50_s']} s = "
                         f"{r['p50_s'] / base['p50_s']:.2f}x; mean {r['mean_s'] / base['mean_s']:.2f}x")
        else:
            ratio = r["goodput_per_s"] / base["goodput_per_s"] if base["goodput_per_s"] else float("inf")
            lines.append(f"{part} users {users}: goodput prune {r['goodput_per_s']} / baseline "
                         f"{base['goodput_per_s']} req/s = {ratio:.2f}x (on time {r['on_time']} vs {base['on_time']})")
    return lines


def plot(rows: list[dict], path: str, slo_ms: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for system, style in (("prune", "o-"), ("baseline", "s--")):
        lat = [r for r in rows if r["part"].startswith("latency") and r["system"] == system]
        left.plot([r["best_of"] for r in lat], [r["p50_s"] for r in lat], style, label=system)
        load = [r for r in rows if r["part"].startswith("goodput") and r["system"] == system]
        right.plot([r["users"] for r in load], [r["goodput_per_s"] for r in load], style, label=system)
    left.set(xlabel="best_of", ylabel="p50 latency (s)", title="Latency at concurrency 1")
    right.set(xlabel="concurrent users", ylabel="requests/s within the SLO", title=f"Goodput, SLO {slo_ms} ms")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prune-url", default="http://127.0.0.1:8000")
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8001")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--config", default="deploy/local.yaml", help="the config prune serves, for the baseline too")
    parser.add_argument("--baseline", choices=["reranker", "naive"], default="reranker",
                        help="prune's Reranker on vLLM's server (same work), or naive client-side best-of-N")
    parser.add_argument("--reward", default=None, help="reward model name (default: the config's default)")
    parser.add_argument("--best-of", type=ints, default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=6, help="requests per latency cell")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--users", type=ints, default=[1, 2, 4, 8])
    parser.add_argument("--load-best-of", type=int, default=4)
    parser.add_argument("--slo-ms", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=60, help="time per load level")
    parser.add_argument("--parts", default="latency,goodput", help="which parts to run")
    parser.add_argument("--out", default="loadtests/results/compare")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(compare(args))
    write_csv(rows, f"{args.out}.csv")
    plot(rows, f"{args.out}.png", args.slo_ms)
    print("\n".join(ratios(rows)))
    print(f"wrote {args.out}.csv and {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
