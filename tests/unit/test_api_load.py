"""The HTTP API under deadlines and load: budgets, admission, adaptive best_of, pruning, readiness."""

from service.generator.fake import FakeGenerator
from tests.api_client import TEXTS, complete, make_client, metric

PRUNABLE = ["x y z w v u", "longer start here and more", "q r s t o p", "the longest start of them all"]


def test_budget_cuts_slow_candidates_and_says_so():
    client = make_client(generator={"candidate_delays_s": [0, 3]})
    body = complete(client, best_of=4, latency_budget_ms=500).json()
    rr = body["reranking"]
    assert rr["stopped_early"] is True and rr["candidates_generated"] == 4
    assert rr["elapsed_ms"] < 500 + 250
    assert body["choices"][0]["text"] == TEXTS[2]  # best of the finished candidates 0 and 2


def test_nothing_by_the_deadline_is_a_504_counted_once():
    client = make_client(generator={"candidate_delays_s": [3]})
    before = {name: metric(client, name) for name in ("prune_budget_exhausted_total", "prune_budget_cutoffs_total")}
    r = complete(client, latency_budget_ms=300)
    assert r.status_code == 504 and r.json()["error"]["param"] == "latency_budget_ms"
    assert metric(client, "prune_budget_exhausted_total") == before["prune_budget_exhausted_total"] + 1
    assert metric(client, "prune_budget_cutoffs_total") == before["prune_budget_cutoffs_total"] + 1


def test_an_engine_that_is_down_is_alive_but_not_ready(client):
    from service.errors import Overloaded

    async def down():
        raise Overloaded("the generator engine is not running", code="engine_unavailable")

    client.generator.check_ready = down
    assert client.get("/healthz").status_code == 200  # the process answers: no restart
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"  # route elsewhere
    assert int(r.headers["Retry-After"]) >= 1  # and when to look again


def test_a_request_that_cannot_meet_its_deadline_under_load_is_refused_at_once_with_retry_after():
    import time

    from service.admission import Admitted

    client = make_client(generator={"seconds_per_token": 0.001})
    capacity = client.reranker.capacity
    capacity.speed.observe(2, 20.0)  # measured: 20 tokens/s per candidate at 2 at once, 40 in total
    body = {"best_of": 2, "max_tokens": 100, "latency_budget_ms": 10_000}
    assert complete(client, **body).status_code == 200  # idle: 5 s predicted, inside 10 s (the fake is faster)
    capacity.speed.by_level = {2: 20.0}  # what the fake taught is not what this test is about
    others = Admitted(candidates=14, expected_end=time.time() + 6)  # other requests' candidates, done in 6 s
    capacity.admitted.append(others)
    before = metric(client, "prune_refused_total", reason="capacity")
    started = time.monotonic()
    r = complete(client, **body)
    assert time.monotonic() - started < 1.0
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "capacity" and r.json()["error"]["type"] == "server_error"
    assert 6 <= int(r.headers["Retry-After"]) <= 9  # the others' end, stretched by up to half (jitter)
    assert metric(client, "prune_refused_total", reason="capacity") == before + 1
    capacity.admitted.remove(others)  # the others done: taken on again
    assert complete(client, **body).status_code == 200


def test_adaptive_best_of_shrinks_under_load_down_to_the_floor():
    client = make_client(limits={"saturation_candidates": 6, "best_of_floor": 2})
    assert complete(client, best_of=4).json()["reranking"]["effective_best_of"] == 4  # idle: as asked

    async def busy():
        return 3  # three candidates of other requests are generating

    client.generator.load = busy
    rr = complete(client, best_of=4).json()["reranking"]
    assert (rr["best_of"], rr["effective_best_of"], rr["candidates_generated"]) == (4, 3, 3)

    async def saturated():
        return 10

    client.generator.load = saturated
    assert complete(client, best_of=4).json()["reranking"]["effective_best_of"] == 2  # the floor
    before = metric(client, "prune_adaptive_reductions_total")
    assert complete(client, best_of=4, n=3).json()["reranking"]["effective_best_of"] == 3  # never below n
    assert metric(client, "prune_adaptive_reductions_total") == before + 1


def test_the_fake_generator_reports_running_candidates_as_load():
    from service.config import FakeGeneratorConfig
    from tests.generator_load import load_during_and_after

    gen = FakeGenerator(FakeGeneratorConfig(texts=["a b c d e f"], seconds_per_token=0.05))
    assert load_during_and_after(gen, candidates=3, max_tokens=6, settle_s=0.1) == (3, 0)


def test_pruning_per_request_and_by_config():
    client = make_client(texts=PRUNABLE, generator={"seconds_per_token": 0.01})
    before = metric(client, "prune_candidates_pruned_total")
    rr = complete(client, best_of=4, pruning={"checkpoints": [2], "fraction": 0.5}).json()["reranking"]
    assert rr["candidates_pruned"] == 2 and rr["candidates_scored"] == 2
    assert complete(client, best_of=4).json()["reranking"]["candidates_pruned"] == 0  # off by default
    assert metric(client, "prune_candidates_pruned_total") == before + 2

    client = make_client(texts=PRUNABLE, generator={"seconds_per_token": 0.01},
                         pruning={"enabled": True, "min_best_of": 4, "checkpoints": [2], "fraction": 0.25})
    assert complete(client, best_of=4).json()["reranking"]["candidates_pruned"] == 1
    assert complete(client, best_of=3).json()["reranking"]["candidates_pruned"] == 0  # below min_best_of
    asked = complete(client, best_of=3, pruning={"fraction": 0.5}).json()["reranking"]  # asked for: regardless
    assert asked["candidates_pruned"] == 1
    assert complete(client, best_of=4, pruning={"fraction": 0.5}).json()["reranking"]["candidates_pruned"] == 2
    assert complete(client, best_of=4, pruning=False).json()["reranking"]["candidates_pruned"] == 0


def test_min_candidates_bounds_pruning_and_adaptive_best_of():
    client = make_client(texts=PRUNABLE, generator={"seconds_per_token": 0.01},
                         limits={"min_candidates": 3, "saturation_candidates": 4})
    rr = complete(client, best_of=4, pruning={"checkpoints": [2], "fraction": 0.75}).json()["reranking"]
    assert rr["candidates_pruned"] == 1

    async def saturated():
        return 10

    client.generator.load = saturated
    assert complete(client, best_of=4).json()["reranking"]["effective_best_of"] == 3


def test_reranking_reports_the_deadline_used(client):
    import time

    before = time.time() * 1000
    rr = complete(client, latency_budget_ms=4000).json()["reranking"]
    assert rr["budget_ms"] == 4000 and before + 4000 - 50 <= rr["deadline_ms"] <= time.time() * 1000 + 4000
    assert rr["candidates_pruned"] == 0 and rr["stopped_early"] is False


def test_a_request_at_fault_hears_so_even_while_the_generator_is_down(client):
    from service.errors import Overloaded

    async def down():
        raise Overloaded("the generator is unavailable", code="replica_unavailable")

    client.generator.load = down
    assert complete(client, model="no-such-model").status_code == 404
    assert complete(client, best_of=99).json()["error"]["param"] == "best_of"
    r = complete(client)  # a request with nothing wrong: the generator's state, at once
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1


def test_return_candidates_shows_the_pruned_as_far_as_they_got():
    client = make_client(texts=PRUNABLE, generator={"seconds_per_token": 0.01})
    rr = complete(client, best_of=4, return_candidates=True,
                  pruning={"checkpoints": [2], "fraction": 0.5}).json()["reranking"]
    # At 2 tokens the two shortest starts (the fake reward is length) go; the other two finish and are scored.
    assert rr["pruned"] == [{"text": "x y", "completion_tokens": 2}, {"text": "q r", "completion_tokens": 2}]
    assert [c["text"] for c in rr["candidates"]] == [PRUNABLE[1], PRUNABLE[3]]
    assert "pruned" not in complete(client, best_of=4).json()["reranking"]  # only when asked
