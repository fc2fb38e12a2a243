"""The chaos harness (loadtests/chaos.py): how it classifies and counts requests,
its loopback guard, and its load loop against an in-process fake service."""

import argparse
import asyncio
import json

import httpx
import pytest

from loadtests import chaos
from loadtests.chaos import Outcome, classify, recovery_s, summarize


def outcome(status, latency_s, budget_s=1.0, retry_after=None, **kw) -> Outcome:
    return Outcome(sent_s=kw.pop("sent_s", 0.0), latency_s=latency_s, budget_s=budget_s, status=status,
                   retry_after=retry_after, **kw)


@pytest.mark.parametrize("status, latency_s, retry_after, kind", [
    (200, 1.1, None, "on_time"),  # exactly budget + 100 ms
    (200, 1.1001, None, "late"),
    (504, 1.1, None, "timeout_504"),
    (504, 1.2, None, "late_504"),
    (503, 0.1, "1", "refused_fast"),  # exactly 100 ms
    (429, 0.05, "3", "refused_fast"),
    (503, 0.1001, "1", "refused_slow"),
    (503, 0.01, None, "refused_slow"),  # no Retry-After
    (503, 0.01, "0", "refused_slow"),  # a Retry-After under 1 s
    (503, 0.01, "Wed, 21 Oct 2015 07:28:00 GMT", "refused_slow"),
    (500, 0.2, None, "5xx"),
    (502, 0.2, None, "5xx"),
    (400, 0.01, None, "4xx"),
])
def test_classify(status, latency_s, retry_after, kind):
    assert classify(outcome(status, latency_s, retry_after=retry_after)) == kind


def test_no_answer_is_hung_when_it_timed_out_else_a_connection_error():
    assert classify(outcome(None, 6.0, error="hung")) == "hung"
    assert classify(outcome(None, 0.01, error="ConnectError")) == "conn_error"


def test_summary_counts_kinds_goodput_and_relative_goodput():
    records = ([outcome(200, 0.5)] * 8 + [outcome(200, 2.0)] * 2 + [outcome(503, 0.02, retry_after="2")] * 5
               + [outcome(503, 0.5)] + [outcome(500, 0.1)] + [outcome(None, 6.0, error="hung")]
               + [outcome(200, 0.4, degraded="scorer_unavailable")] * 2)
    row = summarize(records, duration_s=5.0, reference_goodput=4.0, run="2x")
    assert row["run"] == "2x" and row["requests"] == 20
    assert (row["on_time"], row["late"], row["refused_fast"], row["refused_slow"]) == (10, 2, 5, 1)
    assert (row["5xx"], row["hung"], row["degraded"], row["no_retry_after"]) == (1, 1, 2, 1)
    assert row["on_time_pct_of_200"] == pytest.approx(100 * 10 / 12, abs=0.1)
    assert row["goodput_per_s"] == 2.0 and row["goodput_rel"] == 0.5
    assert row["recover_s"] is None  # no kill


def test_goodput_rel_is_blank_without_a_saturation_run():
    assert summarize([outcome(200, 0.1)], 1.0)["goodput_rel"] is None


def test_recovery_is_the_fifth_200_in_a_row_sent_after_the_kill_in_finishing_order():
    before = [outcome(200, 0.5, sent_s=9.0)] * 10  # sent before the kill: never count
    failing = [outcome(503, 0.2, sent_s=10.0 + i, retry_after="1") for i in range(3)]
    # Five 200s, but one of them finishes after a 503 sent later: the streak restarts.
    mixed = [outcome(200, 0.1, sent_s=13.0 + i) for i in range(4)] + [outcome(503, 0.1, sent_s=17.0)]
    back = [outcome(200, 0.1, sent_s=18.0 + i) for i in range(5)]
    assert recovery_s(before + failing + mixed + back, kill_s=10.0) == pytest.approx(12.1)
    assert recovery_s(before + failing, kill_s=10.0) is None
    assert summarize(before + failing + mixed + back, 30.0, kill_s=10.0)["recover_s"] == pytest.approx(12.1)


def test_saturation_search_stops_when_goodput_stops_rising_by_ten_percent():
    assert chaos.keep_searching({}) and chaos.keep_searching({1: 2.0})
    assert chaos.keep_searching({1: 2.0, 2: 3.9})
    assert not chaos.keep_searching({1: 2.0, 2: 3.9, 4: 4.2})
    assert chaos.saturation_concurrency({1: 2.0, 2: 3.9, 4: 4.2}) == 2  # within 10% of the most: saturated
    assert chaos.saturation_concurrency({1: 2.0, 2: 4.0, 4: 4.0}) == 2  # a tie: the lower load


def test_markdown_table():
    text = chaos.markdown_table([{"run": "1x", "on_time": 3}, {"run": "2x"}], ["run", "on_time"])
    assert text.splitlines() == ["| run | on_time |", "|---|---|", "| 1x | 3 |", "| 2x | - |"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.3.4.5:1/", "http://[::1]:8000",
                                 "http://localhost:8000"])
def test_loopback_urls_are_accepted(url):
    assert chaos.check_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "https://api.example.com", "http://0.0.0.0:8000",
                                 "http://localhost.example.com", "not a url"])
def test_other_hosts_are_refused(url):
    with pytest.raises(SystemExit, match="loopback"):
        chaos.check_loopback(url)


def test_main_refuses_a_remote_url_before_sending_anything():
    with pytest.raises(SystemExit, match="refusing 'http://192.168.1.5:8000'"):
        chaos.main(["--url", "http://192.168.1.5:8000"])


# --- the load loop, against an in-process ASGI fake --------------------------------


def fake_service(status=200, delay_s=0.0, headers=(), body=None):
    """An ASGI app answering every POST the same way, after `delay_s`."""
    seen = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        request = await receive()
        seen.append(json.loads(request["body"]))
        await asyncio.sleep(delay_s)
        payload = json.dumps(body if body is not None else {"reranking": {"degraded": None}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *headers]})
        await send({"type": "http.response.body", "body": payload})

    app.seen = seen
    return app


def load_against(app, budget_ms=1000, max_requests=1000, backoff=True) -> chaos.Load:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9")
    return chaos.Load(client, "fake-model", best_of=8, max_tokens=16, budget_ms=budget_ms, max_requests=max_requests,
                      backoff=backoff, lean=False)  # through the ASGI transport


def run_load(app, concurrency, duration_s, **kw):
    async def go():
        load = load_against(app, **kw)
        async with load.client:
            return await load.run(concurrency, duration_s)

    return asyncio.run(go())


def test_fast_refusals_with_retry_after_are_refused_fast_and_the_count_bounds_the_run():
    app = fake_service(503, headers=[(b"retry-after", b"2")], body={"error": {"code": "overloaded"}})
    records, took = run_load(app, concurrency=3, duration_s=10, max_requests=20, backoff=False)  # a retry storm
    assert len(records) == 20 and took < 5
    assert {classify(r) for r in records} == {"refused_fast"}
    assert {r.error for r in records} == {"overloaded"}
    assert app.seen[0]["best_of"] == 8 and app.seen[0]["latency_budget_ms"] == 1000
    assert app.seen[0]["prompt"] != app.seen[1]["prompt"]  # the prompts rotate


def test_refused_users_wait_their_retry_after_before_sending_again():
    app = fake_service(503, headers=[(b"retry-after", b"1")], body={"error": {"code": "overloaded"}})
    records, took = run_load(app, concurrency=2, duration_s=1.5, max_requests=100)
    assert len(records) == 4 and took >= 1.5  # each user: at 0 s and after 1 s; its next wait ends the run
    assert sorted(round(r.sent_s) for r in records) == [0, 0, 1, 1]


def test_answers_past_the_budget_are_late_and_the_duration_bounds_the_run():
    records, took = run_load(fake_service(200, delay_s=0.35), concurrency=2, duration_s=0.5, budget_ms=200)
    assert 2 <= len(records) <= 4 and took < 1.5
    assert {classify(r) for r in records} == {"late"}
    assert all(r.latency_s >= 0.35 for r in records)
    row = summarize(records, took)
    assert row["late"] == len(records) and row["goodput_per_s"] == 0


def test_degraded_answers_are_flagged():
    app = fake_service(200, body={"reranking": {"degraded": "scorer_unavailable"}})
    records, _ = run_load(app, concurrency=1, duration_s=5, max_requests=3)
    assert [classify(r) for r in records] == ["on_time"] * 3
    assert summarize(records, 1.0)["degraded"] == 3


def test_a_request_unanswered_past_budget_plus_slack_is_hung(monkeypatch):
    monkeypatch.setattr(chaos, "HUNG_AFTER_S", 0.2)
    records, took = run_load(fake_service(200, delay_s=30), concurrency=2, duration_s=0.1, budget_ms=100)
    assert len(records) == 2 and took < 2
    assert {classify(r) for r in records} == {"hung"}


def test_a_kill_scenario_is_skipped_when_no_replica_serves_the_port():
    async def go():
        load = load_against(fake_service())
        args = argparse.Namespace(url="http://127.0.0.1:9", saturation=1)
        async with load.client:
            return await chaos.Chaos(load, args).kill("generator")

    [row] = asyncio.run(go())
    assert "no ServeReplica:prune:generator process" in row["skipped"]
    assert "skipped: no ServeReplica" in chaos.tables({"kill-generator": [row]})


# --- the bare HTTP/1.1 client of bursts and load loops --------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_the_lean_client_reads_status_retry_after_and_the_envelope(chunked):
    payload = json.dumps({"error": {"code": "capacity", "type": "server_error"}}).encode()
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload) if chunked else payload
    framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % len(payload)
    received = []

    async def scenario():
        async def answer(reader, writer):
            received.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\n%s\r\n\r\n%s" % (framing, body))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await chaos.send_lean(f"http://127.0.0.1:{port}", "/v1/completions", b'{"a": 1}', 1.0, 0.0)

    outcome = asyncio.run(scenario())
    assert (outcome.status, outcome.retry_after, outcome.error) == (503, "3", "capacity")
    assert received[0].startswith(b"POST /v1/completions HTTP/1.1") and b"content-length: 8" in received[0]


def test_the_lean_client_counts_a_silent_server_as_hung(monkeypatch):
    monkeypatch.setattr(chaos, "HUNG_AFTER_S", 0.2)

    async def scenario():
        async def silent(reader, writer):
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await chaos.send_lean(f"http://127.0.0.1:{port}", "/v1/completions", b"{}", 0.1, 0.0)

    outcome = asyncio.run(scenario())
    assert outcome.status is None and outcome.error == "hung" and outcome.latency_s < 1
