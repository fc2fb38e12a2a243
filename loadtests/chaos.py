"""Chaos harness: overload, hang-ups, replica kills and hostile bodies against a local prune.

    python -m loadtests.chaos --url http://127.0.0.1:8000
    python -m loadtests.chaos --url http://127.0.0.1:8000 --scenarios overload,kill-generator \\
        --saturation 4 --duration 30 --out docs/perf/chaos

Loopback only (it SIGKILLs replica processes of the service on this machine).
Every load loop is closed (C users sending back to back; a refused user waits
its Retry-After first, as OpenAI's SDK does, unless --no-backoff) and bounded by a
duration and a request count; every request by budget + 5 s, after which it
counts as hung. Scenarios:

- overload: find the concurrency C that saturates the engine (--saturation, or
  the engine's tokens/s at C = 1, 2, 4, ... until they stop rising by 10%: the
  least C within 10% of the most), then run C x 1, 2, 4, 8.
- hangup: clients that send best_of 8 and disconnect after ~1 s; the next
  request must be answered on time, and the engine must abort their candidates.
- kill-generator, kill-scorer, kill-ingress: load at C; SIGKILL that deployment's
  replicas after --kill-after s; time to recover = from the kill until 5 requests
  in a row (sent after the kill, in the order they finish) are answered 200.
- burst: --burst requests sent at the same moment, once each (e.g. 96 at
  best_of 8, or 256 at best_of 4): refusals must be fast and carry
  Retry-After, answers on time, nothing hung; refusal latency percentiles.
- hostile: bad bodies sent once each; each must get a 4xx with OpenAI's error
  envelope, and /healthz must still answer 200 afterwards.

It prints a markdown table per scenario and writes <out>.json (summaries and
every request), <out>.md (the tables) and <out>.png (overload shares and
goodput; status codes per second around each kill).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from loadtests.prompts import PROMPTS

FAST_S = 0.1  # a refusal within this is fast; an answer within budget + this is on time
HUNG_AFTER_S = 5.0  # a request still unanswered at budget + this is hung
RECOVERED_STREAK = 5  # 200s in a row that end a kill's outage
KINDS = ("on_time", "late", "late_504", "timeout_504", "refused_fast", "refused_slow",
         "5xx", "4xx", "hung", "conn_error")
SCENARIOS = ("overload", "burst", "hangup", "kill-generator", "kill-scorer", "kill-ingress", "hostile")
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (s from the run's start) and how it ended."""

    sent_s: float
    latency_s: float  # send to last byte (or to giving up)
    budget_s: float
    status: int | None = None  # None: no HTTP answer (hung or connection error)
    retry_after: str | None = None
    degraded: str | None = None  # reranking.degraded of a 200
    server_ms: float | None = None  # reranking.elapsed_ms of a 200: arrival to answer built, as prune saw it
    error: str | None = None  # the envelope's code, or the exception's name

    @property
    def done_s(self) -> float:
        return self.sent_s + self.latency_s


def classify(o: Outcome) -> str:
    on_time = o.latency_s <= o.budget_s + FAST_S
    if o.status is None:
        return "hung" if o.error == "hung" else "conn_error"
    if o.status == 200:
        return "on_time" if on_time else "late"
    if o.status == 504:
        return "timeout_504" if on_time else "late_504"
    if o.status in (429, 503):
        fast = o.latency_s <= FAST_S and retry_after_s(o.retry_after) >= 1
        return "refused_fast" if fast else "refused_slow"
    return "5xx" if o.status >= 500 else "4xx"


def retry_after_s(header: str | None) -> float:
    try:
        return float(header)
    except (TypeError, ValueError):
        return 0.0


def recovery_s(records: list[Outcome], kill_s: float, streak: int = RECOVERED_STREAK) -> float | None:
    """Seconds from the kill until `streak` requests sent after it, in the order
    they finished, were answered 200 in a row; None if that never happened."""
    after = sorted((r for r in records if r.sent_s >= kill_s), key=lambda r: r.done_s)
    run = 0
    for r in after:
        run = run + 1 if r.status == 200 else 0
        if run == streak:
            return round(r.done_s - kill_s, 2)
    return None


def summarize(records: list[Outcome], duration_s: float, reference_goodput: float | None = None,
              kill_s: float | None = None, **labels) -> dict:
    """The table row of one run: counts per kind, goodput (on-time 200s per
    second), goodput relative to the saturation run, and time to recover."""
    counts = {k: 0 for k in KINDS}
    for r in records:
        counts[classify(r)] += 1
    answered_200 = counts["on_time"] + counts["late"]
    goodput = counts["on_time"] / duration_s if duration_s > 0 else 0.0
    refusals = [r.latency_s * 1000 for r in records if r.status in (429, 503)]
    return {
        **labels,
        "requests": len(records),
        **counts,
        "on_time_pct_of_200": round(100 * counts["on_time"] / answered_200, 1) if answered_200 else None,
        # A refusal a client cannot schedule its retry from (slow ones are in refused_slow too).
        "no_retry_after": sum(1 for r in records if r.status in (429, 503) and retry_after_s(r.retry_after) < 1),
        "degraded": sum(1 for r in records if r.degraded),
        # Late at the client, and already past the budget when prune built the answer (the rest lost
        # their time between the answer and the client: writing, the network, the client's own loop).
        "late_at_server": sum(1 for r in records if classify(r) == "late" and (r.server_ms or 0) > r.budget_s * 1000),
        "goodput_per_s": round(goodput, 3),
        "goodput_rel": round(goodput / reference_goodput, 3) if reference_goodput else None,
        **{f"refusal_p{q}_ms": None if not refusals else round(percentile(refusals, q / 100), 1) for q in (50, 95, 99)},
        "recover_s": recovery_s(records, kill_s) if kill_s is not None else None,
        "duration_s": round(duration_s, 1),
    }


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank rule; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def burst_row(records: list[Outcome], **labels) -> dict:
    """A burst's outcome: the counts, refusal latency percentiles (ms), and the
    share of 200s later than budget + 0.25 s."""
    row = summarize(records, 1.0, **labels)
    answered = [r for r in records if r.status == 200]
    late = sum(1 for r in answered if r.latency_s > r.budget_s + 0.25)
    row["late_pct_of_200"] = round(100 * late / len(answered), 1) if answered else None
    return row


def saturation_concurrency(rates: dict[int, float], within: float = 0.9) -> int:
    """The least concurrency at which the engine's tokens/s came within 10% of the most measured."""
    top = max(rates.values())
    return min(c for c, rate in rates.items() if rate >= within * top)


def keep_searching(rates: dict[int, float], gain: float = 1.1) -> bool:
    """Go on doubling while the last step raised the engine's tokens/s by more than 10%."""
    values = list(rates.values())
    return len(values) < 2 or values[-1] > gain * max(values[:-1])


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


LOAD_COLUMNS = ["run", "concurrency", "requests", "on_time", "on_time_pct_of_200", "refused_fast", "refused_slow",
                "no_retry_after", "late", "late_at_server", "late_504", "timeout_504", "5xx", "4xx", "hung",
                "conn_error", "degraded",
                "refusal_p50_ms", "refusal_p99_ms", "goodput_per_s", "goodput_rel", "goodput_of_peak"]
KILL_COLUMNS = LOAD_COLUMNS + ["killed", "killed_at_s", "recover_s"]
BURST_COLUMNS = ["run", "requests", "on_time", "late", "refused_fast", "refused_slow", "no_retry_after",
                 "refusal_p50_ms", "refusal_p95_ms", "refusal_p99_ms", "late_pct_of_200", "timeout_504", "5xx", "4xx",
                 "hung", "conn_error"]
COLUMNS = {"overload": LOAD_COLUMNS, "burst": BURST_COLUMNS,
           "hangup": ["hung_up", "aborted_before", "aborted_after", "aborted_delta", "next_status",
                      "next_latency_s", "next_kind"],
           "hostile": ["body", "status", "latency_s", "error", "ok"]}


def check_loopback(url: str) -> str:
    """The URL without a trailing slash, or SystemExit if its host is not loopback."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"chaos: refusing {url!r}: the harness kills processes and floods the "
                         "service, so it only runs against loopback (127.0.0.0/8, ::1, localhost)")
    return url.rstrip("/")


# --- talking to the service ---------------------------------------------------


async def send(client: httpx.AsyncClient, path: str, body: bytes, budget_s: float, t0: float,
               give_up_s: float | None = None) -> Outcome:
    """POST `body` and read the whole answer; never waits past budget + 5 s."""
    sent = time.monotonic()
    limit = give_up_s if give_up_s is not None else budget_s + HUNG_AFTER_S
    fields: dict = {}
    try:
        async with asyncio.timeout(limit):
            r = await client.post(path, content=body, headers=JSON_HEADERS, timeout=limit + 1)
        fields = {"status": r.status_code, "retry_after": r.headers.get("retry-after")}
        try:
            data = r.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and r.status_code == 200:
            fields["degraded"] = (data.get("reranking") or {}).get("degraded")
            fields["server_ms"] = (data.get("reranking") or {}).get("elapsed_ms")
        elif isinstance(data, dict) and isinstance(data.get("error"), dict):
            fields["error"] = data["error"].get("code") or data["error"].get("type")
    except (TimeoutError, httpx.TimeoutException):
        fields = {"error": "hung"}
    except httpx.HTTPError as e:
        fields = {"error": type(e).__name__}
    return Outcome(round(sent - t0, 4), round(time.monotonic() - sent, 4), budget_s, **fields)


async def send_lean(url: str, path: str, body: bytes, budget_s: float, t0: float) -> Outcome:
    """`send` over a bare HTTP/1.1 connection (one request, then close). On a small
    machine httpx's own work per connection is most of what a burst measures (96
    requests at once against a server that answers each in microseconds: httpx p50
    105 ms, this 10 ms), so bursts use this to time the service, not the client."""
    parts = urlsplit(url)
    sent = time.monotonic()
    fields: dict = {}
    try:
        async with asyncio.timeout(budget_s + HUNG_AFTER_S):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                         % (path.encode(), parts.netloc.encode(), len(body), body))
            await writer.drain()
            answer = await reader.read()
            writer.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        fields = {"status": int(lines[0].split(" ")[1]), "retry_after": headers.get("retry-after")}
        if "chunked" in headers.get("transfer-encoding", ""):
            payload = b"".join(payload.split(b"\r\n")[1::2])
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if isinstance(data, dict) and fields["status"] == 200:
            fields["degraded"] = (data.get("reranking") or {}).get("degraded")
            fields["server_ms"] = (data.get("reranking") or {}).get("elapsed_ms")
        elif isinstance(data, dict) and isinstance(data.get("error"), dict):
            fields["error"] = data["error"].get("code") or data["error"].get("type")
    except TimeoutError:
        fields = {"error": "hung"}
    except (OSError, IndexError, ValueError) as e:
        fields = {"error": type(e).__name__}
    return Outcome(round(sent - t0, 4), round(time.monotonic() - sent, 4), budget_s, **fields)


class Load:
    """What every load request looks like, and the closed loop that sends them."""

    def __init__(self, client: httpx.AsyncClient, model: str, best_of: int, max_tokens: int,
                 budget_ms: int, max_requests: int, backoff: bool = True, lean: bool = True):
        self.client, self.max_requests, self.budget_s = client, max_requests, budget_ms / 1000
        self.backoff, self.lean = backoff, lean
        self.body = {"model": model, "best_of": best_of, "max_tokens": max_tokens, "latency_budget_ms": budget_ms}
        self.prompts = itertools.cycle(PROMPTS)

    def next_body(self, **overrides) -> bytes:
        return json.dumps({**self.body, "prompt": next(self.prompts), **overrides}).encode()

    async def run(self, concurrency: int, duration_s: float) -> tuple[list[Outcome], float]:
        """C users sending back to back until the duration or the request count
        is reached; returns the records and the run's length in seconds."""
        t0 = time.monotonic()
        records: list[Outcome] = []
        budget = iter(range(self.max_requests))

        async def user() -> None:
            while time.monotonic() - t0 < duration_s and next(budget, None) is not None:
                if self.lean:  # see send_lean: the service's time, not httpx's
                    record = await send_lean(str(self.client.base_url), "/v1/completions", self.next_body(),
                                             self.budget_s, t0)
                else:
                    record = await send(self.client, "/v1/completions", self.next_body(), self.budget_s, t0)
                records.append(record)
                # A refused client waits as told, the way OpenAI's SDK does; --no-backoff
                # resends at once (a retry storm).
                wait_s = retry_after_s(record.retry_after) if self.backoff and record.status in (429, 503) else 0
                await asyncio.sleep(min(wait_s, max(0.0, duration_s - (time.monotonic() - t0))))

        await asyncio.gather(*(user() for _ in range(concurrency)))
        return records, time.monotonic() - t0


def replica_processes(port: int, deployment: str) -> list:
    """The replica processes of `deployment` in the Ray instance serving `port`:
    siblings (under the same raylet) of the HTTP proxy listening there."""
    import psutil

    tag = f"ServeReplica:prune:{deployment}"
    found = {}
    try:
        listeners = [c.pid for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid]
    except psutil.Error:  # another user's processes, or a system that hides them
        return []
    for pid in listeners:
        try:
            raylet = psutil.Process(pid).parent()
            siblings = raylet.children() if raylet else []
        except psutil.Error:
            continue
        for p in siblings:
            try:
                if tag in " ".join(p.cmdline()):
                    found[p.pid] = p
            except psutil.Error:  # gone meanwhile
                pass
    return list(found.values())


async def metric(client: httpx.AsyncClient, name: str) -> float | None:
    """The sum of a Prometheus counter's samples on /metrics, or None if absent."""
    try:
        text = (await client.get("/metrics", timeout=10)).text
    except httpx.HTTPError:
        return None
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.split("{", 1)[0].split(" ", 1)[0] == name]
    return sum(values) if values else None


async def wait_healthy(load: Load, within_s: float = 90) -> bool:
    """Until one plain request is answered 200 (a killed replica is back)."""
    give_up = time.monotonic() + within_s
    while time.monotonic() < give_up:
        if (await send(load.client, "/v1/completions", load.next_body(), load.budget_s, 0)).status == 200:
            return True
        await asyncio.sleep(1)
    return False


# --- scenarios ------------------------------------------------------------------


class Chaos:
    """The scenarios, sharing one load generator, the saturation concurrency and
    its goodput (found once, by the first scenario that needs them)."""

    def __init__(self, load: Load, args: argparse.Namespace):
        self.load, self.args = load, args
        self.saturation: int | None = args.saturation
        self.reference: float | None = None  # goodput at saturation
        self.records: dict[str, list[dict]] = {}

    def keep(self, run: str, records: list[Outcome], kill_s: float | None = None) -> None:
        self.records[run] = [asdict(r) | {"kind": classify(r), "kill_s": kill_s} for r in records]

    async def find_saturation(self) -> int:
        """The concurrency that saturates the engine: past it, its tokens/s (from the
        service's prune_completion_tokens_total) stop rising. Goodput may rise further,
        as adaptive best_of gives requests fewer candidates."""
        if self.saturation is None:
            rates: dict[int, float] = {}
            c = 1
            while c <= self.args.max_concurrency and keep_searching(rates):
                before = await metric(self.load.client, "prune_completion_tokens_total") or 0.0
                records, took = await self.load.run(c, self.args.search_duration)
                after = await metric(self.load.client, "prune_completion_tokens_total") or 0.0
                rates[c] = round((after - before) / took, 1)
                print(f"search: concurrency {c}: engine {rates[c]} tokens/s, "
                      f"goodput {summarize(records, took)['goodput_per_s']}/s", flush=True)
                c *= 2
            self.saturation = saturation_concurrency(rates)
            still_rising = keep_searching(rates)
            print(f"saturation: concurrency {self.saturation}"
                  + (" (tokens/s still rising at --max-concurrency)" if still_rising else ""), flush=True)
        return self.saturation

    async def overload(self) -> list[dict]:
        c, rows = await self.find_saturation(), []
        for m in self.args.multiples:
            records, took = await self.load.run(c * m, self.args.duration)
            if m == 1:
                self.reference = summarize(records, took)["goodput_per_s"]
            rows.append(summarize(records, took, self.reference, run=f"{m}x", concurrency=c * m, multiple=m))
            self.keep(f"overload-{m}x", records)
        peak = max(row["goodput_per_s"] for row in rows)
        for row in rows:  # what overload must not cost: the best goodput seen at any load
            row["goodput_of_peak"] = round(row["goodput_per_s"] / peak, 3) if peak else None
        return rows

    async def burst(self) -> list[dict]:
        """`--burst` requests at the same moment, each sent once: what a retry storm
        or a thundering herd looks like to the front door."""
        n, bodies = self.args.burst, [self.load.next_body() for _ in range(self.args.burst)]
        t0 = time.monotonic()
        records = await asyncio.gather(*(send_lean(self.args.url, "/v1/completions", body, self.load.budget_s, t0)
                                         for body in bodies))
        self.keep("burst", records)
        return [burst_row(records, run=f"{n} at once, best_of {self.args.best_of}")]

    async def hangup(self) -> list[dict]:
        client, n = self.load.client, self.args.hangups
        before = await metric(client, "prune_candidates_aborted_total")
        t0 = time.monotonic()
        gone = await asyncio.gather(*(send(client, "/v1/completions", self.load.next_body(best_of=8),
                                           self.load.budget_s, t0, give_up_s=self.args.hangup_after)
                                      for _ in range(n)))
        nxt = await send(client, "/v1/completions", self.load.next_body(), self.load.budget_s, time.monotonic())
        await asyncio.sleep(1)  # the aborts are counted when the engine has stopped the candidates
        after = await metric(client, "prune_candidates_aborted_total")
        self.keep("hangup", [*gone, nxt])
        return [{"hung_up": sum(1 for g in gone if g.error == "hung"), "aborted_before": before,
                 "aborted_after": after,
                 "aborted_delta": after - before if None not in (before, after) else None,
                 "next_status": nxt.status, "next_latency_s": nxt.latency_s, "next_kind": classify(nxt)}]

    async def kill(self, deployment: str) -> list[dict]:
        c = await self.find_saturation()
        port = urlsplit(self.args.url).port or 80
        if not replica_processes(port, deployment):
            return [{"run": f"kill-{deployment}", "skipped": f"no ServeReplica:prune:{deployment} process "
                                                             f"under the Ray instance serving port {port}"}]
        t0 = time.monotonic()
        running = asyncio.create_task(self.load.run(c, self.args.duration))
        await asyncio.sleep(self.args.kill_after)
        victims = replica_processes(port, deployment)
        kill_s = time.monotonic() - t0
        for p in victims:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        print(f"kill-{deployment}: SIGKILLed {[p.pid for p in victims]} at {kill_s:.1f} s", flush=True)
        records, took = await running
        self.keep(f"kill-{deployment}", records, kill_s)
        row = summarize(records, took, self.reference, kill_s, run=f"kill-{deployment}", concurrency=c,
                        killed=len(victims), killed_at_s=round(kill_s, 1))
        if not await wait_healthy(self.load):
            print(f"kill-{deployment}: not answering 200 yet, going on", flush=True)
        return [row]

    async def hostile(self) -> list[dict]:
        load, t0, rows = self.load, time.monotonic(), []
        for name, body in hostile_bodies(load.body["model"]):
            o = await send(load.client, "/v1/completions", body, 30.0, t0)
            rows.append({"body": name, "status": o.status, "latency_s": o.latency_s, "error": o.error,
                         "ok": o.status is not None and 400 <= o.status < 500 and o.error is not None})
        health = await load.client.get("/healthz", timeout=10)
        rows.append({"body": "GET /healthz afterwards", "status": health.status_code, "ok": health.status_code == 200})
        return rows


def hostile_bodies(model: str) -> list[tuple[str, bytes]]:
    def body(**fields) -> bytes:
        return json.dumps({"model": model, "prompt": "Hi", **fields}).encode()

    return [
        ("invalid JSON", b'{"model": "' + model.encode() + b'", "prompt": '),
        ("empty body", b""),
        ("2 MB body", body(prompt="a" * 2_000_000)),
        ("10k-deep nesting", b'{"model": "x", "prompt": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
        ("100k-token prompt", body(prompt="word " * 100_000)),
        ("best_of 10**9", body(best_of=10**9)),
        ("invalid UTF-8", b'{"model": "' + model.encode() + b'", "prompt": "\xff\xfe\xc3("}'),
        ("wrong types", json.dumps({"model": 5, "prompt": {"a": 1}, "best_of": "many"}).encode()),
        ("unknown model", body(model="no-such-model")),
    ]


# --- output ---------------------------------------------------------------------

STACKS = {"on time": ["on_time"], "refused fast": ["refused_fast"], "late": ["late", "late_504"],
          "5xx, hung, dropped": ["5xx", "hung", "conn_error"],
          "other": ["refused_slow", "timeout_504", "4xx"]}


def tables(results: dict[str, list[dict]]) -> str:
    parts = []
    for name, rows in results.items():
        if rows and "skipped" in rows[0]:
            parts.append(f"## {name}\n\nskipped: {rows[0]['skipped']}")
        else:
            parts.append(f"## {name}\n\n{markdown_table(rows, COLUMNS.get(name, KILL_COLUMNS))}")
    return "\n\n".join(parts) + "\n"


def plot(results: dict[str, list[dict]], records: dict[str, list[dict]], path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kills = [k for k in records if k.startswith("kill-")]
    panels = (["overload"] if results.get("overload") else []) + kills
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, name in zip(axes[0], panels):
        if name == "overload":
            rows, bottom = results["overload"], [0.0] * len(results["overload"])
            x = [str(r["run"]) for r in rows]
            for label, kinds in STACKS.items():
                share = [sum(r[k] for k in kinds) / max(r["requests"], 1) for r in rows]
                ax.bar(x, share, bottom=bottom, label=label)
                bottom = [b + s for b, s in zip(bottom, share)]
            ax.plot(x, [r["goodput_rel"] or 0 for r in rows], "ko-", label="goodput / goodput at 1x")
            ax.set(xlabel="load (x saturation concurrency)", ylabel="share of requests; goodput ratio",
                   title="overload")
        else:
            by_second: dict[str, dict[int, int]] = {}
            for r in records[name]:
                label = str(r["status"]) if r["status"] is not None else r["kind"]
                second = int(r["sent_s"] + r["latency_s"])
                by_second.setdefault(label, {})[second] = by_second.get(label, {}).get(second, 0) + 1
            seconds = range(max(s for counts in by_second.values() for s in counts) + 1)
            bottom = [0] * len(seconds)
            for label, counts in sorted(by_second.items()):
                heights = [counts.get(s, 0) for s in seconds]
                ax.bar(seconds, heights, bottom=bottom, width=0.9, label=label)
                bottom = [b + h for b, h in zip(bottom, heights)]
            ax.axvline(records[name][0]["kill_s"], color="red", linestyle="--", label="kill")
            ax.set(xlabel="s since start", ylabel="answers per second", title=name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


async def first_model(client: httpx.AsyncClient) -> str:
    r = await client.get("/v1/models", timeout=10)
    r.raise_for_status()
    return r.json()["data"][0]["id"]


async def run(args: argparse.Namespace) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Every scenario asked for, in order: their table rows and their requests."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=args.url, limits=limits) as client:
        model = args.model or await first_model(client)
        load = Load(client, model, args.best_of, args.max_tokens, args.budget_ms, args.max_requests,
                    backoff=not args.no_backoff, lean=not args.httpx)
        chaos, results = Chaos(load, args), {}
        for name in args.scenarios:
            print(f"--- {name}", flush=True)
            if name.startswith("kill-"):
                results[name] = await chaos.kill(name.removeprefix("kill-"))
            else:
                results[name] = await getattr(chaos, name)()
            print(tables({name: results[name]}), flush=True)
    return results, chaos.records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the service, on loopback: http://127.0.0.1:8000")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--out", default="loadtests/results/chaos", help="writes <out>.json, .md and .png")
    parser.add_argument("--model", help="default: the first id of GET /v1/models")
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--budget-ms", type=int, default=10_000, help="latency_budget_ms of every request")
    parser.add_argument("--saturation", type=int, help="the concurrency that saturates the engine (default: search)")
    parser.add_argument("--multiples", default="1,2,4,8", help="overload runs, as multiples of the saturation")
    parser.add_argument("--duration", type=float, default=60, help="seconds per overload step and kill run")
    parser.add_argument("--search-duration", type=float, default=20, help="seconds per saturation-search step")
    parser.add_argument("--max-concurrency", type=int, default=64, help="where the saturation search stops")
    parser.add_argument("--max-requests", type=int, default=5000, help="cap on the requests of one run")
    parser.add_argument("--kill-after", type=float, default=5, help="seconds of load before a kill")
    parser.add_argument("--burst", type=int, default=96, help="requests sent at once by the burst scenario")
    parser.add_argument("--hangups", type=int, default=8, help="clients that hang up")
    parser.add_argument("--hangup-after", type=float, default=1.0, help="seconds before they hang up")
    parser.add_argument("--httpx", action="store_true",
                        help="load loops send with httpx instead of bare HTTP/1.1 connections (its own cost counts)")
    parser.add_argument("--no-backoff", action="store_true",
                        help="refused clients resend at once instead of waiting their Retry-After (a retry storm)")
    args = parser.parse_args(argv)
    args.url = check_loopback(args.url)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.multiples = [int(m) for m in args.multiples.split(",")]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    results, records = asyncio.run(run(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{args.out}.json", "w") as f:
        json.dump({"settings": vars(args), "scenarios": results, "requests": records}, f, indent=1)
    Path(f"{args.out}.md").write_text(tables(results))
    wrote = [f"{args.out}.json", f"{args.out}.md"]
    if plot(results, records, f"{args.out}.png"):
        wrote.append(f"{args.out}.png")
    print("wrote " + ", ".join(wrote))
    return 0


if __name__ == "__main__":
    sys.exit(main())
