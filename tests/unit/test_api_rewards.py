"""The HTTP API's reward models: per request, the scoring endpoint, and a reward model that is stuck."""

import pytest

from service.config import FakeRewardConfig
from tests.api_client import complete, make_client, metric

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
