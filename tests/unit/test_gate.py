"""The front door (service.gate): admission is decided before the app parses
anything, refusals never enter it, and what it admits stays held until answered."""

import asyncio
import time

import httpx
import pytest

from service.admission import Admitted
from service.gate import AdmissionGate
from tests.api_client import make_client, metric

BODY = {"model": "fake-model", "prompt": "Say something.", "best_of": 2, "max_tokens": 100,
        "latency_budget_ms": 10_000}


class CountingApp:
    """Stands for FastAPI behind the gate: counts what reaches it, answers 200 after `delay_s`."""

    def __init__(self, delay_s: float = 0.0):
        self.calls, self.plans, self.delay_s = 0, [], delay_s

    async def __call__(self, scope, receive, send):
        self.calls += 1
        self.plans.append(scope.get("state", {}).get("plan"))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await asyncio.sleep(self.delay_s)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def gate_over(app, **overrides):
    """A gate over `app`, with the Reranker of the fake service (test_api.make_client)."""
    reranker = make_client(**overrides).reranker
    return AdmissionGate(app, reranker, keys={}), reranker


def saturate(reranker) -> Admitted:
    """Other requests' candidates on the books, done in 6 s, at a measured 20 tokens/s at 2 at once."""
    reranker.capacity.speed.observe(2, 20.0)
    others = Admitted(candidates=14, expected_end=time.time() + 6)
    reranker.capacity.admitted.append(others)
    return others


async def post(gate, body=BODY, path="/v1/completions", **kw) -> httpx.Response:
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, json=body, **kw)


def test_a_refusal_is_answered_by_the_gate_without_entering_the_app():
    app = CountingApp()
    gate, reranker = gate_over(app)
    saturate(reranker)
    r = asyncio.run(post(gate))
    assert r.status_code == 503 and r.json()["error"]["code"] == "capacity"
    assert int(r.headers["Retry-After"]) >= 6 and int(r.headers["retry-after-ms"]) >= 5000
    assert app.calls == 0


def test_an_admitted_request_reaches_the_app_with_its_plan_held_until_the_answer_is_written():
    app = CountingApp(delay_s=0.2)
    gate, reranker = gate_over(app)

    async def scenario():
        sending = asyncio.create_task(post(gate))
        await asyncio.sleep(0.1)
        held = reranker.capacity.candidates  # while the app is answering
        r = await sending
        return r, held

    r, held = asyncio.run(scenario())
    assert r.status_code == 200 and r.content.startswith(b'{"model"')  # the body reached the app whole
    assert app.calls == 1 and app.plans[0].effective_best_of == 2 and app.plans[0].budget.budget_ms == 10_000
    assert held == 2 and reranker.capacity.candidates == 0


def test_a_burst_is_refused_in_milliseconds_and_only_what_fits_is_admitted():
    app = CountingApp(delay_s=0.5)
    gate, reranker = gate_over(app)
    reranker.capacity.speed.observe(2, 20.0)  # 64 tokens: 3.2 s at 2 at once; at 16 at once, 25.6 s

    async def one(client):
        started = time.monotonic()
        r = await client.post("/v1/completions", json=BODY)
        return r, time.monotonic() - started

    async def burst():
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(one(client) for _ in range(64)))

    results = asyncio.run(burst())
    admitted = [r for r, _ in results if r.status_code == 200]
    refused = [(r, took) for r, took in results if r.status_code == 503]
    assert len(admitted) + len(refused) == 64 and app.calls == len(admitted)
    # 100 tokens at 20 tokens/s fit 10 s with up to 4 at once: two requests of 2.
    assert len(admitted) == 2
    assert all("Retry-After" in r.headers for r, _ in refused)
    # None of them waited for the admitted ones' 0.5 s in the app.
    assert max(took for _, took in refused) < 0.5
    assert reranker.capacity.candidates == 0


def test_a_body_the_gate_cannot_validate_gets_the_apps_400_naming_the_field():
    client = make_client()
    r = client.post("/v1/completions", json={**BODY, "best_of": "many"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "best_of"
    assert client.reranker.capacity.candidates == 0


def test_a_bad_key_is_a_401_before_admission_counts_anything():
    app = CountingApp()
    gate, reranker = gate_over(app)
    gate.keys = {"secret": "team"}
    others = saturate(reranker)
    before = metric(make_client(), "prune_refused_total", reason="capacity")
    r = asyncio.run(post(gate, headers={"Authorization": "Bearer wrong"}))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert app.calls == 0 and reranker.capacity.admitted == [others]  # nothing entered, nothing put on the books
    assert metric(make_client(), "prune_refused_total", reason="capacity") == before  # not a capacity refusal


def test_gate_refusals_are_counted_like_the_apps_answers():
    client = make_client()
    saturate(client.reranker)
    before = metric(client, "prune_requests_total", endpoint="/v1/completions", status="503") or 0
    assert client.post("/v1/completions", json=BODY).status_code == 503
    assert metric(client, "prune_requests_total", endpoint="/v1/completions", status="503") == before + 1


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_both_reranking_routes_are_admitted_by_the_gate(path):
    body = BODY if path == "/v1/completions" else {**{k: v for k, v in BODY.items() if k != "prompt"},
                                                    "messages": [{"role": "user", "content": "Hi"}]}
    app = CountingApp()
    gate, reranker = gate_over(app)
    saturate(reranker)
    r = asyncio.run(post(gate, body, path))
    assert r.status_code == 503 and r.json()["error"]["code"] == "capacity"
    assert app.calls == 0  # refused at the gate, for either route
