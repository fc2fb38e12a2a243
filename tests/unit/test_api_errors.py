"""The HTTP API's refusals: bad input named in OpenAI's error envelope, keys, and nothing internal leaked."""

import time

import pytest

from tests.api_client import complete, make_client, metric


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


OPEN_TO_PROBES = ["/healthz", "/readyz", "/metrics"]  # liveness, readiness and scrapes carry no key
BEHIND_KEYS = ["/openapi.json", "/docs", "/redoc", "/metrics/targets", "/v1/models", "/v1/reward_models"]


def test_with_keys_only_probes_and_scrapes_answer_without_one():
    client = make_client(api_keys=["sekret"])
    key = {"Authorization": "Bearer sekret"}
    for path in BEHIND_KEYS:
        r = client.get(path)
        assert (r.status_code, r.json()["error"]["type"]) == (401, "authentication_error"), path
        assert client.get(path, headers=key).status_code == 200, path
    assert client.get("/openapi.json", headers=key).json()["info"]["title"] == "prune"
    for path in OPEN_TO_PROBES:
        assert client.get(path).status_code == 200, path
    # Without keys (loopback, the default) everything answers anyone.
    assert all(make_client().get(path).status_code == 200 for path in BEHIND_KEYS + OPEN_TO_PROBES)


def test_the_docs_can_be_switched_off():
    client = make_client(docs=False)
    assert [client.get(path).status_code for path in ("/openapi.json", "/docs", "/redoc")] == [404] * 3


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


def test_internal_errors_do_not_leak(client):
    async def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail /opt/weights")
        yield

    client.generator.generate = explode
    r = complete(client)
    assert r.status_code == 500
    assert "secret" not in r.text and r.json()["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    "pruning, param",
    [({"fraction": 1.5}, "pruning.fraction"), ({"checkpoints": [8, 4]}, "pruning.checkpoints"),
     ({"fracton": 0.5}, "pruning.fracton"), ("sometimes", "pruning")],
)
def test_bad_pruning_is_a_400_naming_the_field(client, pruning, param):
    r = complete(client, pruning=pruning)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


@pytest.mark.parametrize("path, extra", [("/v1/rewards", {"completions": [""]}),
                                         ("/v1/chat/completions", {"model": "fake-model"})])
@pytest.mark.parametrize("content", [[{}], [{"type": "image_url", "image_url": {}}]])
def test_non_text_message_parts_are_a_400_naming_the_part(client, path, extra, content):
    # Once a 500 on /v1/rewards (found by schemathesis): {"messages": [{"role": "system", "content": [{}]}]}.
    r = client.post(path, json={"messages": [{"role": "system", "content": content}], **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages.0.content"
    assert complete(client).status_code == 200


def test_a_prompt_too_long_for_the_context_is_refused_before_it_is_decoded_or_tokenized():
    client = make_client(generator={"max_model_len": 100}, limits={"max_body_bytes": 100_000})
    decoded = []

    async def detokenize(token_ids):
        decoded.append(len(token_ids))
        return "x"

    client.generator.detokenize = detokenize
    r = client.post("/v1/completions", json={"model": "fake-model", "prompt": list(range(150)), "max_tokens": 4})
    assert (r.status_code, r.json()["error"]["param"], r.json()["error"]["code"]) == (
        400, "prompt", "context_length_exceeded")
    r = client.post("/v1/chat/completions", json={"model": "fake-model", "max_tokens": 4,
                                                  "messages": [{"role": "user", "content": "word " * 1000}]})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "messages")
    assert decoded == [] and client.generator.samplings == []  # neither decoded nor sent to the generator
    assert complete(client, max_tokens=4).status_code == 200  # and it still serves


def test_a_banned_word_longer_than_a_phrase_is_refused_by_name(client):
    r = complete(client, bad_words=["ok", "x" * 101])
    assert (r.status_code, r.json()["error"]["param"]) == (400, "bad_words.1")  # the entry, by its place
    assert complete(client, bad_words=["x" * 100]).status_code == 200
