"""The HTTP API over the fake generator and reward, without Ray."""

import json
import time

import openai
import pytest
from fastapi.testclient import TestClient

from service.api import create_api
from service.config import FakeRewardConfig, parse_config
from service.generator.fake import FakeGenerator
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from service.reward.slop import SlopReward
from service.serving import Reranker
from tests.metrics_text import sample

TEXTS = ["A short one.", "The longest candidate of them all.", "A medium candidate."]


def make_client(texts=TEXTS, **overrides):
    args = {
        "generator": {"kind": "fake", "texts": texts, "served_model_name": "fake-model"},
        "reward_models": {"fake": {"kind": "fake"}, "slop": {"kind": "slop"}},
        "default_reward_model": "fake",
        "limits": {"best_of_default": 3, "best_of_max": 8, "max_tokens_max": 100,
                   "latency_budget_ms_default": 5000, "latency_budget_ms_max": 10000,
                   "max_body_bytes": 2048},
    }
    for key, value in overrides.items():
        args[key] = value if not isinstance(value, dict) else {**args.get(key, {}), **value}
    config = parse_config(args)
    rewards = {"fake": FakeReward(FakeRewardConfig()), "slop": SlopReward()}
    catalog = StaticCatalog(rewards, config.default_reward_model)
    generator = FakeGenerator(config.generator, judge=catalog)
    reranker = Reranker(config, generator, catalog)
    client = TestClient(create_api(reranker), raise_server_exceptions=False)
    client.generator, client.rewards, client.reranker = generator, rewards, reranker
    return client


def metric(client, name, **labels):
    return sample(client.get("/metrics").text, name, **labels)


@pytest.fixture
def client():
    return make_client()


def complete(client, **body):
    return client.post("/v1/completions", json={"model": "fake-model", "prompt": "Say something.", **body})


def test_completion_returns_the_best_candidate_with_reranking(client):
    r = complete(client, return_candidates=True)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "The longest candidate of them all."
    rr = body["reranking"]
    assert rr["best_of"] == 3 and rr["candidates_generated"] == 3 and rr["candidates_scored"] == 3
    assert rr["reward_model"] == "fake" and rr["scores"] == [len(TEXTS[1])]
    assert rr["stopped_early"] is False and rr["budget_ms"] > 0 and rr["elapsed_ms"] >= 0
    assert [c["text"] for c in rr["candidates"]] == TEXTS
    assert body["usage"]["completion_tokens"] == sum(len(t.split()) for t in TEXTS)


def test_n_returns_the_n_best_in_order(client):
    body = complete(client, n=2, best_of=3).json()
    assert [c["text"] for c in body["choices"]] == [TEXTS[1], TEXTS[2]]
    assert body["reranking"]["scores"] == [len(TEXTS[1]), len(TEXTS[2])]
    assert [c["index"] for c in body["choices"]] == [0, 1]


def test_chat_completion(client):
    r = client.post("/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": TEXTS[1]}


SLOPPY_IS_LONGEST = ["Great question! I hope this helps! Let me know if you have any other questions.",
                     "Keep bread in a paper bag."]


def test_reward_model_per_request_does_the_scoring():
    client = make_client(texts=SLOPPY_IS_LONGEST)
    by_default = complete(client, best_of=2).json()
    assert by_default["choices"][0]["text"] == SLOPPY_IS_LONGEST[0]  # the fake reward: the longest wins
    fake_calls = client.rewards["fake"].calls
    body = complete(client, best_of=2, reward_model="slop", return_candidates=True).json()
    assert body["choices"][0]["text"] == SLOPPY_IS_LONGEST[1]  # slop: the plain one wins
    assert body["reranking"]["reward_model"] == "slop" and client.rewards["fake"].calls == fake_calls
    slop_scores = [c["score"] for c in body["reranking"]["candidates"]]
    assert slop_scores[1] > slop_scores[0] and body["reranking"]["scores"] == [slop_scores[1]]


def sse_events(response):
    lines = [line for line in response.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_streaming_completion_is_openai_sse(client):
    r = complete(client, stream=True, stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    assert "".join(e["choices"][0]["text"] for e in events if e["choices"]) == TEXTS[1]
    # The usage chunk, asked for, has no choices (as OpenAI's); reranking rides on the finish chunk.
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["reranking"]["candidates_generated"] == 3


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "Say something."}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
])
def test_every_stream_chunk_has_a_choice_unless_usage_is_asked(client, path, body):
    # The commonest client loop reads chunk.choices[0] of every chunk.
    r = client.post(path, json={"model": "fake-model", "stream": True, "n": 2, "best_of": 3, **body})
    events = sse_events(r)
    assert all(len(e["choices"]) == 1 for e in events)
    assert [e["choices"][0]["index"] for e in events if e["choices"][0]["finish_reason"]] == [0, 1]
    assert "reranking" in events[-1] and all("reranking" not in e for e in events[:-1])
    assert events[-1]["reranking"]["effective_best_of"] == 3 and "usage" not in events[-1]


@pytest.mark.parametrize("path, body, text_of", [
    ("/v1/completions", {"prompt": "Say something."}, lambda c: c["text"]),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}, lambda c: c["delta"].get("content", "")),
])
def test_a_leader_stream_sends_the_leaders_text_as_it_is_made_and_says_when_it_committed(path, body, text_of):
    texts = ["a b c d e f g h", "longword another x y z w v u t s", "mid words here and more"]
    client = make_client(texts=texts, generator={"seconds_per_token": 0.01})
    before = metric(client, "prune_stream_first_text_seconds_count", commit="leader") or 0
    tokens_before = metric(client, "prune_stream_commit_tokens_sum") or 0
    r = client.post(path, json={"model": "fake-model", "stream": True, "best_of": 3,
                                "stream_commit": {"policy": "leader", "at_tokens": 2}, **body})
    events = sse_events(r)
    pieces = [text_of(e["choices"][0]) for e in events if e["choices"][0]["finish_reason"] is None]
    assert "".join(pieces) == texts[1] and len([p for p in pieces if p]) > 5  # the text so far, then word by word
    commit = events[-1]["reranking"]["commit"]
    assert commit["at_tokens"] == 2 and commit["candidates_alive"] == 3 and commit["leader_scores"] == [16.0]
    assert events[-1]["reranking"]["candidates_pruned"] == 2 and events[-1]["reranking"]["scores"] == [len(texts[1])]
    assert metric(client, "prune_stream_first_text_seconds_count", commit="leader") == before + 1
    assert metric(client, "prune_stream_commit_tokens_sum") == tokens_before + 2


def test_a_select_stream_sends_the_chosen_text_once_and_stream_commit_needs_a_stream():
    texts = ["a b c d e f g h", "longword another x y z w v u t s"]
    client = make_client(texts=texts, generator={"seconds_per_token": 0.01})
    events = sse_events(complete(client, stream=True, best_of=2, stream_commit="select"))
    assert [e["choices"][0]["text"] for e in events] == [texts[1], ""]
    assert "commit" not in events[-1]["reranking"]
    r = complete(client, stream_commit="leader")
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_commit"
    r = complete(client, stream=True, stream_commit="later")
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_commit.policy"


def test_a_failure_after_the_stream_began_is_an_error_event_not_a_broken_connection():
    client = make_client(texts=["a b c d e f g h"], generator={"seconds_per_token": 0.01})

    async def failing(prompt, completions):
        raise RuntimeError("the reward model broke")

    client.rewards["fake"].score = failing
    r = complete(client, stream=True, best_of=1, stream_options={"include_usage": True})
    assert r.status_code == 200  # it began at the first token, before anything failed
    events = sse_events(r)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "a b c d e f g h"
    assert events[-1]["error"]["type"] == "server_error" and "broke" not in json.dumps(events[-1])


def test_streaming_chat(client):
    r = client.post("/v1/chat/completions", json={"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    events = sse_events(r)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == TEXTS[1]


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"best_of": 0}, 400, "best_of"),
        ({"best_of": 9}, 400, "best_of"),
        ({"n": 4, "best_of": 3}, 400, "n"),
        ({"max_tokens": 101}, 400, "max_tokens"),
        ({"max_tokens": -1}, 400, "max_tokens"),
        ({"latency_budget_ms": 20000}, 400, "latency_budget_ms"),
        ({"temperature": 3}, 400, "temperature"),
        ({"prompt": ["a", ""]}, 400, "prompt"),
        ({"prompt": [[1, 2], []]}, 400, "prompt"),
        ({"prompt": ["a"] * 17}, 400, "prompt"),  # limits.batch_prompts_max
        ({"prompt": ["a", "b"], "stream": True}, 400, "stream"),
        ({"prompt": [1, -2]}, 400, "prompt"),
        ({"prompt": [1, 60000]}, 400, "prompt"),  # not in the (fake) model's vocabulary
        ({"prompt": []}, 400, "prompt"),
        ({"model": "gpt-4"}, 404, "model"),
        ({"reward_model": "/etc/passwd"}, 404, "reward_model"),
    ],
)
def test_bad_parameters_get_the_error_envelope_naming_them(client, body, status, param):
    r = complete(client, **body)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("prompt", [[5, 6, 7], [[5, 6, 7]]])
def test_a_prompt_of_token_ids_is_sampled_from_and_decoded_for_the_reward(prompt):
    client = make_client(texts=[])  # the fake's candidates quote the prompt's text
    body = complete(client, prompt=prompt, best_of=2).json()
    assert body["usage"]["prompt_tokens"] == 3  # the ids themselves, one token each
    assert body["choices"][0]["text"] == "Candidate 0 answers: t5 t6 t7"  # the decoding reached the candidates


def test_missing_prompt_is_named(client):
    r = client.post("/v1/completions", json={"model": "fake-model"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_invalid_json_is_a_400(client):
    r = client.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_prompt_plus_max_tokens_beyond_the_context_is_a_400():
    client = make_client(generator={"max_model_len": 20})
    r = complete(client, prompt=" ".join(["word"] * 30), max_tokens=8)
    assert r.status_code == 400 and r.json()["error"]["param"] in {"prompt", "max_tokens"}


def test_oversized_body_is_a_413_and_the_service_keeps_serving(client):
    r = complete(client, prompt="x" * 5000)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert complete(client).status_code == 200


def test_api_keys_are_enforced_when_configured():
    client = make_client(api_keys=["sekret"])
    assert complete(client).status_code == 401
    assert complete(client).json()["error"]["type"] == "authentication_error"
    r = client.post("/v1/completions", json={"model": "fake-model", "prompt": "x"}, headers={"Authorization": "Bearer sekret"})
    assert r.status_code == 200


def test_callers_keys_come_from_the_environment_and_their_limits_answer_429_with_retry_after(monkeypatch):
    import threading

    monkeypatch.setenv("PRUNE_TEST_KEY", "from-env")
    client = make_client(callers=[{"name": "team-a", "key_env": "PRUNE_TEST_KEY", "max_concurrent": 1,
                                   "tokens_per_minute": 600}],
                         generator={"candidate_delays_s": [0.5]})
    auth = {"Authorization": "Bearer from-env"}
    body = {"model": "fake-model", "prompt": "Hi", "best_of": 2, "max_tokens": 100, "latency_budget_ms": 5000}
    assert client.post("/v1/completions", json=body).status_code == 401
    # Holding the only slot: a second request is refused at once, told to retry when the first's deadline passes.
    first = threading.Thread(target=lambda: client.post("/v1/completions", json=body, headers=auth))
    first.start()
    time.sleep(0.2)
    before = metric(client, "prune_refused_total", reason="caller_concurrency")
    r = client.post("/v1/completions", json=body, headers=auth)
    first.join()
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert r.json()["error"]["code"] == "concurrency_limit" and 1 <= int(r.headers["Retry-After"]) <= 8  # 5 s at most, + jitter
    assert "from-env" not in r.text
    assert metric(client, "prune_refused_total", reason="caller_concurrency") == before + 1
    # 600 tokens a minute; each request may use 201 (2 x 100 + the prompt) and gives back what it did not.
    for _ in range(5):
        assert client.post("/v1/completions", json=body, headers=auth).status_code == 200
    huge = client.post("/v1/completions", json={**body, "best_of": 8}, headers=auth)
    assert huge.status_code == 400 and huge.json()["error"]["param"] == "max_tokens"


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


def test_internal_errors_do_not_leak(client):
    async def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail /opt/weights")
        yield

    client.generator.generate = explode
    r = complete(client)
    assert r.status_code == 500
    assert "secret" not in r.text and r.json()["error"]["type"] == "server_error"


def test_models_and_health(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "fake-model"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_an_engine_that_is_down_is_alive_but_not_ready(client):
    from service.errors import Overloaded

    async def down():
        raise Overloaded("the generator engine is not running", code="engine_unavailable")

    client.generator.check_ready = down
    assert client.get("/healthz").status_code == 200  # the process answers: no restart
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"  # route elsewhere


def test_metrics_move_with_the_requests_served(client):
    names = {
        "ok": ("prune_requests_total", {"endpoint": "/v1/completions", "status": "200"}),
        "bad": ("prune_requests_total", {"endpoint": "/v1/completions", "status": "400"}),
        "latency": ("prune_request_latency_seconds_count", {"endpoint": "/v1/completions"}),
        "generated": ("prune_candidates_generated_total", {}),
        "scored": ("prune_candidates_scored_total", {}),
        "tokens": ("prune_completion_tokens_total", {}),
        # Rewards may be negative, so their histograms have no _sum: the buckets tell the value.
        "chosen": ("prune_chosen_reward_count", {"reward_model": "fake"}),
        "chosen_le_10": ("prune_chosen_reward_bucket", {"reward_model": "fake", "le": "10.0"}),
        "chosen_le_100": ("prune_chosen_reward_bucket", {"reward_model": "fake", "le": "100.0"}),
        "candidate_rewards": ("prune_candidate_reward_count", {"reward_model": "fake"}),
        "margin": ("prune_reward_margin_sum", {"reward_model": "fake"}),
        "uplift": ("prune_reward_uplift_sum", {"reward_model": "fake"}),
        "best_of": ("prune_effective_best_of_sum", {}),
        "cutoffs": ("prune_budget_cutoffs_total", {}),
    }
    before = {key: metric(client, name, **labels) for key, (name, labels) in names.items()}
    complete(client, best_of=3)
    complete(client, best_of=0)
    delta = {key: metric(client, name, **labels) - before[key] for key, (name, labels) in names.items()}
    longest, first, median = len(TEXTS[1]), len(TEXTS[0]), len(TEXTS[2])
    assert longest == 34
    assert delta == {
        "ok": 1, "bad": 1, "latency": 2, "generated": 3, "scored": 3,
        "tokens": sum(len(t.split()) for t in TEXTS), "candidate_rewards": 3,
        "chosen": 1, "chosen_le_10": 0, "chosen_le_100": 1,  # the chosen reward: 34
        "margin": longest - median, "uplift": longest - first, "best_of": 3, "cutoffs": 0,
    }


def test_a_stock_openai_client_works_unchanged(client):
    oai = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    completion = oai.completions.create(model="fake-model", prompt="Say something.", max_tokens=16)
    assert completion.choices[0].text == TEXTS[1]
    chat = oai.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={"best_of": 2})
    assert chat.choices[0].message.content == TEXTS[0] or chat.choices[0].message.content == TEXTS[1]
    assert chat.model_extra["reranking"]["best_of"] == 2
    stream = oai.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == TEXTS[1]
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="fake-model", prompt="x", extra_body={"best_of": 0})


def test_reward_models_are_listed_with_the_default(client):
    data = client.get("/v1/reward_models").json()["data"]
    assert {(m["id"], m["kind"], m["default"]) for m in data} == {("fake", "fake", True), ("slop", "slop", False)}


def test_rewards_endpoint_scores_given_completions(client):
    r = client.post("/v1/rewards", json={"reward_model": "slop", "prompt": "How do I keep bread fresh?",
                                         "completions": ["Great question! It depends.", "Freeze it sliced."]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reward_model"] == "slop" and len(body["scores"]) == 2
    assert body["scores"][1] > body["scores"][0]
    assert set(body["components"]) >= {"sycophancy", "hedging"}


def test_rewards_endpoint_takes_messages_and_defaults(client):
    r = client.post("/v1/rewards", json={"messages": [{"role": "user", "content": "Hi"}], "completions": ["a", "bbb"]})
    assert r.json() == {"reward_model": "fake", "scores": [1.0, 3.0]}


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"reward_model": "/models/evil", "prompt": "p", "completions": ["a"]}, 404, "reward_model"),
        ({"prompt": "p", "completions": []}, 400, "completions"),
        ({"prompt": "p", "completions": ["a"] * 65}, 400, "completions"),
        ({"completions": ["a"]}, 400, "prompt"),
        ({"prompt": "p", "messages": [{"role": "user", "content": "x"}], "completions": ["a"]}, 400, "prompt"),
    ],
)
def test_rewards_endpoint_errors(client, body, status, param):
    r = client.post("/v1/rewards", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


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


def test_metrics_show_only_prunes_own_families(client):
    from prometheus_client import Counter

    Counter("vllm_like_metric", "a library's own metric").inc()
    text = client.get("/metrics").text
    assert "vllm_like_metric" not in text and "prune_requests_total" in text


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


PRUNABLE = ["x y z w v u", "longer start here and more", "q r s t o p", "the longest start of them all"]


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


@pytest.mark.parametrize(
    "pruning, param",
    [({"fraction": 1.5}, "pruning.fraction"), ({"checkpoints": [8, 4]}, "pruning.checkpoints"),
     ({"fracton": 0.5}, "pruning.fracton"), ("sometimes", "pruning")],
)
def test_bad_pruning_is_a_400_naming_the_field(client, pruning, param):
    r = complete(client, pruning=pruning)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_reranking_reports_the_deadline_used(client):
    import time

    before = time.time() * 1000
    rr = complete(client, latency_budget_ms=4000).json()["reranking"]
    assert rr["budget_ms"] == 4000 and before + 4000 - 50 <= rr["deadline_ms"] <= time.time() * 1000 + 4000
    assert rr["candidates_pruned"] == 0 and rr["stopped_early"] is False


@pytest.mark.parametrize("path, extra", [("/v1/rewards", {"completions": [""]}),
                                         ("/v1/chat/completions", {"model": "fake-model"})])
@pytest.mark.parametrize("content", [[{}], [{"type": "image_url", "image_url": {}}]])
def test_non_text_message_parts_are_a_400_naming_the_part(client, path, extra, content):
    # Once a 500 on /v1/rewards (found by schemathesis): {"messages": [{"role": "system", "content": [{}]}]}.
    r = client.post(path, json={"messages": [{"role": "system", "content": content}], **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages.0.content"
    assert complete(client).status_code == 200


def test_a_stuck_reward_model_without_a_fallback_is_a_504_at_the_deadline_not_after():
    import time

    client = make_client(fallback_reward=None)
    client.rewards["fake"].config = FakeRewardConfig(seconds_per_call=60)  # never answers in time
    started = time.monotonic()
    r = complete(client, latency_budget_ms=1000)
    elapsed = time.monotonic() - started
    assert r.status_code == 504 and r.json()["error"]["param"] == "latency_budget_ms"
    assert 0.9 < elapsed < 1.0 + 0.15


def test_a_stuck_reward_model_degrades_to_the_fallback_within_the_budget():
    import time

    client = make_client(texts=SLOPPY_IS_LONGEST)  # fake would pick the sloppy one, slop the plain one
    client.rewards["fake"].config = FakeRewardConfig(seconds_per_call=60)
    before = metric(client, "prune_degraded_total", reason="scorer_slow")
    chosen_before = metric(client, "prune_chosen_reward_count", reward_model="fake")
    started = time.monotonic()
    r = complete(client, best_of=2, latency_budget_ms=1000)
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and elapsed < 1.0
    body = r.json()
    assert body["reranking"]["degraded"] == "scorer_slow" and body["choices"][0]["text"] == SLOPPY_IS_LONGEST[1]
    assert metric(client, "prune_degraded_total", reason="scorer_slow") == before + 1
    # The fallback's scores are on another scale: not recorded as the fake model's rewards.
    assert metric(client, "prune_chosen_reward_count", reward_model="fake") == chosen_before
    assert "degraded" not in complete(make_client()).json()["reranking"]  # only when it happened
