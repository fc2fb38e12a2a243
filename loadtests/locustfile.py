"""A realistic load on a prune deployment (or any server speaking its API).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000     # web UI
    python -m loadtests.load --url http://127.0.0.1:8000 --users 4 --time 60s   # headless + summary

The mix, each part set by an environment variable:
    PRUNE_MODEL             model id (default: the first of GET /v1/models)
    PRUNE_CHAT_SHARE        share of chat completions; the rest are completions (0.5)
    PRUNE_BEST_OF           best_of values, picked at random (1,4,8)
    PRUNE_BUDGETS_MS        latency budgets, picked at random (5000,10000,20000)
    PRUNE_MAX_TOKENS        max_tokens (32)
    PRUNE_STREAM_SHARE      share of streaming requests (0.2)
    PRUNE_INVALID_SHARE     share of deliberately invalid requests, expected 4xx (0.05)
    PRUNE_PRUNING_SHARE     share of requests asking for early pruning (0)
    PRUNE_WAIT_S            think time between a user's requests, seconds (0: closed loop)
    PRUNE_SEED              seed of the random mix (0)

Every valid request is named by its shape ("chat bo4 10000ms"), so locust's own
tables break latency down by best_of and budget. Beyond locust's stats this file
records, per valid request, whether it answered within its budget, time to first
byte for streams (as "TTFB ..." rows), and the `reranking` block's effective
best_of and budget cut-offs; at the end it prints a summary (requests/s,
p50/p95/p99, failure rate, goodput = requests/s answered 2xx within their
budget) and writes it as JSON to --summary.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time

from locust import HttpUser, between, constant, events, task


def _floats(name: str, default: str) -> list[float]:
    return [float(x) for x in os.environ.get(name, default).split(",") if x.strip()]


CHAT_SHARE = float(os.environ.get("PRUNE_CHAT_SHARE", "0.5"))
BEST_OF = [int(x) for x in _floats("PRUNE_BEST_OF", "1,4,8")]
BUDGETS_MS = [int(x) for x in _floats("PRUNE_BUDGETS_MS", "5000,10000,20000")]
MAX_TOKENS = int(os.environ.get("PRUNE_MAX_TOKENS", "32"))
STREAM_SHARE = float(os.environ.get("PRUNE_STREAM_SHARE", "0.2"))
INVALID_SHARE = float(os.environ.get("PRUNE_INVALID_SHARE", "0.05"))
PRUNING_SHARE = float(os.environ.get("PRUNE_PRUNING_SHARE", "0"))
WAIT_S = float(os.environ.get("PRUNE_WAIT_S", "0"))
RNG = random.Random(int(os.environ.get("PRUNE_SEED", "0")))

PROMPTS = [
    "Write one sentence about autumn.",
    "Explain in two sentences why the sky is blue.",
    "Give me a short tip for writing clear emails.",
    "Describe a busy train station in three sentences.",
    "What makes a good cup of coffee? Answer briefly.",
    "How do I keep basil alive on a windowsill?",
    "Tell me one surprising fact about octopuses.",
    "Explain what a database index is, in plain words.",
]

# Requests a client gets wrong, and the parameter the 4xx must name.
INVALID = [
    ({"best_of": 0}, "best_of"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"temperature": 9}, "temperature"),
    ({"reward_model": "no-such-reward"}, "reward_model"),
    ({"latency_budget_ms": 10**9}, "latency_budget_ms"),
]


class Record:
    """What the summary is computed from (this process's requests)."""

    started = 0.0
    stopped = 0.0
    valid: list[dict] = []
    invalid_ok = 0
    invalid_wrong = 0


@events.init_command_line_parser.add_listener
def _options(parser, **kwargs):
    parser.add_argument("--summary", default="", help="write the prune summary (JSON) here")


@events.test_start.add_listener
def _start(environment, **kwargs):
    Record.started, Record.valid = time.time(), []


@events.test_stop.add_listener
def _stop(environment, **kwargs):
    Record.stopped = time.time()
    summary = summarize()
    print(format_summary(summary), flush=True)
    path = getattr(environment.parsed_options, "summary", "") if environment.parsed_options else ""
    if path:
        with open(path, "w") as f:
            json.dump(summary, f, indent=2)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def summarize() -> dict:
    duration = max(Record.stopped - Record.started, 1e-9)
    done = Record.valid
    ok = [r for r in done if r["ok"]]
    latencies = [r["latency_s"] for r in ok]
    streams = [r["ttfb_s"] for r in ok if r.get("ttfb_s") is not None]
    return {
        "duration_s": round(duration, 1),
        "requests": len(done),
        "requests_per_s": round(len(done) / duration, 3),
        "p50_s": pct(latencies, 0.50),
        "p95_s": pct(latencies, 0.95),
        "p99_s": pct(latencies, 0.99),
        "failure_rate": round(sum(not r["ok"] for r in done) / len(done), 4) if done else None,
        "goodput_per_s": round(sum(r["on_time"] for r in ok) / duration, 3),
        "on_time_share": round(sum(r["on_time"] for r in ok) / len(done), 4) if done else None,
        "mean_effective_best_of": round(statistics.fmean(r["effective_best_of"] for r in ok), 2) if ok else None,
        "mean_requested_best_of": round(statistics.fmean(r["best_of"] for r in ok), 2) if ok else None,
        "budget_cut_share": round(sum(r["stopped_early"] for r in ok) / len(ok), 4) if ok else None,
        "stream_ttfb_p50_s": pct(streams, 0.50),
        "invalid_answered_4xx": Record.invalid_ok,
        "invalid_answered_otherwise": Record.invalid_wrong,
    }


def format_summary(s: dict) -> str:
    return (
        f"prune summary over {s['duration_s']} s: {s['requests']} requests, {s['requests_per_s']} req/s, "
        f"p50/p95/p99 {s['p50_s']}/{s['p95_s']}/{s['p99_s']} s, failure rate {s['failure_rate']}, "
        f"goodput {s['goodput_per_s']} req/s ({s['on_time_share']} on time), "
        f"effective best_of {s['mean_effective_best_of']} of {s['mean_requested_best_of']} asked, "
        f"budget cut {s['budget_cut_share']}, stream TTFB p50 {s['stream_ttfb_p50_s']} s, "
        f"invalid requests answered 4xx: {s['invalid_answered_4xx']} "
        f"(otherwise: {s['invalid_answered_otherwise']})"
    )


class PruneUser(HttpUser):
    wait_time = between(0, 2 * WAIT_S) if WAIT_S else constant(0)
    model: str | None = os.environ.get("PRUNE_MODEL")

    def on_start(self):
        if PruneUser.model is None:
            PruneUser.model = self.client.get("/v1/models", name="models").json()["data"][0]["id"]

    def _body(self, chat: bool) -> dict:
        prompt = RNG.choice(PROMPTS)
        body = {"model": self.model, "max_tokens": MAX_TOKENS, "seed": RNG.randrange(1 << 30)}
        body |= {"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt}
        return body

    @task
    def one_request(self):
        chat = RNG.random() < CHAT_SHARE
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body = self._body(chat)
        if RNG.random() < INVALID_SHARE:
            return self._invalid(path, body)
        best_of, budget_ms = RNG.choice(BEST_OF), RNG.choice(BUDGETS_MS)
        stream = RNG.random() < STREAM_SHARE
        body |= {"best_of": best_of, "latency_budget_ms": budget_ms, "stream": stream}
        if RNG.random() < PRUNING_SHARE:
            body["pruning"] = True
        name = f"{'chat' if chat else 'completion'} bo{best_of} {budget_ms}ms{' stream' if stream else ''}"
        record = {"best_of": best_of, "budget_ms": budget_ms, "ok": False, "on_time": False,
                  "effective_best_of": best_of, "stopped_early": False}
        started = time.perf_counter()
        with self.client.post(path, json=body, name=name, stream=stream, catch_response=True) as response:
            try:
                reranking = self._read(response, stream, started, record, name)
            except Exception as exc:  # a broken answer is a failure, whatever its status
                response.failure(f"unreadable answer: {exc}")
                reranking = None
            record["latency_s"] = time.perf_counter() - started
            if response.status_code == 200 and reranking is not None:
                record["ok"] = True
                record["on_time"] = record["latency_s"] * 1000 <= budget_ms
                record["effective_best_of"] = reranking.get("effective_best_of", best_of)
                record["stopped_early"] = bool(reranking.get("stopped_early"))
            elif response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
        Record.valid.append(record)

    def _read(self, response, stream: bool, started: float, record: dict, name: str) -> dict | None:
        if response.status_code != 200:
            return None
        if not stream:
            return response.json()["reranking"]
        reranking = None
        for line in response.iter_lines():
            if not line:
                continue
            if "ttfb_s" not in record:
                record["ttfb_s"] = time.perf_counter() - started
                events.request.fire(request_type="TTFB", name=name, response_time=record["ttfb_s"] * 1000,
                                    response_length=0, exception=None, context={})
            data = line.decode().removeprefix("data: ")
            if data != "[DONE]":
                reranking = json.loads(data).get("reranking", reranking)
        return reranking

    def _invalid(self, path: str, body: dict) -> None:
        change, param = RNG.choice(INVALID)
        with self.client.post(path, json=body | change, name=f"invalid {param} (expect 4xx)",
                              catch_response=True) as response:
            named = response.status_code in (400, 404) and _error_param(response) == param
            if named:
                Record.invalid_ok += 1
                response.success()
            else:
                Record.invalid_wrong += 1
                response.failure(f"expected a 4xx naming {param}, got HTTP {response.status_code}")


def _error_param(response) -> str | None:
    try:
        return response.json()["error"]["param"]
    except Exception:
        return None
