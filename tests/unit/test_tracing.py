"""Where a request's time went: `reranking.timings`, and the span tree an operator sees
(read with the OpenTelemetry SDK's in-memory exporter)."""

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.api import create_api
from service.tracing import RequestTracer
from tests.api_client import make_client

TEXTS = ["One two three four five six.", "Seven eight nine ten.", "Eleven twelve thirteen fourteen fifteen.",
         "Sixteen seventeen eighteen nineteen."]


def traced_client(**overrides):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = make_client(texts=TEXTS, **overrides)
    client = TestClient(create_api(client.reranker, tracer=RequestTracer(provider)), raise_server_exceptions=False)
    return client, exporter


def body(**fields):
    return {"model": "fake-model", "prompt": "Count.", "best_of": 4, "max_tokens": 20, "return_candidates": True,
            "latency_budget_ms": 10_000, **fields}


def test_every_answer_says_where_its_time_went():
    client = make_client(texts=TEXTS, generator={"seconds_per_token": 0.01, "candidate_delays_s": [0, 0, 0, 0.2]})
    reranking = client.post("/v1/completions", json=body()).json()["reranking"]
    t = reranking["timings"]
    # The slowest candidate starts 0.2 s late and writes up to 6 words at 10 ms each.
    assert 200 <= t["generation_ms"] <= reranking["elapsed_ms"]
    assert 0 <= t["admission_ms"] < 100 and 0 <= t["selection_ms"] <= reranking["elapsed_ms"]
    assert 5 <= t["first_token_ms"] < 200  # the first word of the first candidate: 10 ms in
    assert len(t["scoring_ms"]) >= 1 and all(ms >= 0 for ms in t["scoring_ms"])
    assert t["queue_ms"] is None and t["prefill_ms"] is None  # the fake engine reports no queue


def test_a_trace_shows_each_candidate_its_score_and_where_it_stopped():
    client, exporter = traced_client(generator={"seconds_per_token": 0.01})
    r = client.post("/v1/completions", json=body(pruning={"checkpoints": [2], "fraction": 0.5}))
    assert r.status_code == 200
    reranking = r.json()["reranking"]
    spans = exporter.get_finished_spans()
    by_name = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (root,) = by_name["prune.request"]
    (generate,) = by_name["prune.generate"]
    candidates = sorted(by_name["prune.candidate"], key=lambda s: s.attributes["prune.candidate"])
    assert len(candidates) == 4 and all(s.parent.span_id == generate.context.span_id for s in candidates)
    assert generate.parent.span_id == root.context.span_id
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    # Two of four pruned at the checkpoint: they stopped at 2-3 tokens, unscored, with an event each.
    pruned = [s for s in candidates if s.attributes["prune.pruned"]]
    assert len(pruned) == reranking["candidates_pruned"] == 2
    assert all(s.attributes["prune.tokens"] <= 3 and "prune.score" not in s.attributes for s in pruned)
    events = [e for e in generate.events if e.name == "pruning checkpoint"]
    assert [e.attributes["prune.checkpoint"] for e in events] == [2, 2]
    # The others carry the scores the answer reports, and the chosen one is marked.
    scored = sorted((s.attributes["prune.score"] for s in candidates if "prune.score" in s.attributes), reverse=True)
    assert scored == sorted((c["score"] for c in reranking["candidates"]), reverse=True)
    (chosen,) = [s for s in candidates if s.attributes["prune.chosen"]]
    assert chosen.attributes["prune.score"] == pytest.approx(reranking["scores"][0])
    # Every part lies within the request, in order: admitted, generated, selected, written.
    assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in spans)
    (admission,), (select,), (respond,) = by_name["prune.admission"], by_name["prune.select"], by_name["prune.respond"]
    assert admission.end_time <= generate.start_time + 1_000_000 and generate.end_time <= select.end_time
    assert select.end_time <= respond.end_time == root.end_time
    assert len(by_name["prune.score"]) == len(reranking["timings"]["scoring_ms"])
    assert root.attributes["prune.candidates_pruned"] == 2 and root.attributes["prune.best_of"] == 4


def test_a_stream_is_traced_when_its_last_chunk_is_sent():
    client, exporter = traced_client()
    with client.stream("POST", "/v1/completions", json=body(stream=True, return_candidates=False)) as r:
        assert r.status_code == 200
        chunks = list(r.iter_lines())
    assert chunks and exporter.get_finished_spans()
    roots = [s for s in exporter.get_finished_spans() if s.name == "prune.request"]
    assert len(roots) == 1 and roots[0].attributes["http.route"] == "/v1/completions"


def test_no_tracer_is_built_while_tracing_is_off():
    client = make_client()
    assert RequestTracer.from_config(client.reranker.config.tracing) is None
    assert client.post("/v1/completions", json=body()).status_code == 200
