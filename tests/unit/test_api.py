"""The HTTP API over the fake generator and reward, without Ray: completions, chat, token prompts, models."""

import openai
import pytest

from tests.api_client import TEXTS, complete, make_client


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


@pytest.mark.parametrize("prompt", [[5, 6, 7], [[5, 6, 7]]])
def test_a_prompt_of_token_ids_is_sampled_from_and_decoded_for_the_reward(prompt):
    client = make_client(texts=[])  # the fake's candidates quote the prompt's text
    body = complete(client, prompt=prompt, best_of=2).json()
    assert body["usage"]["prompt_tokens"] == 3  # the ids themselves, one token each
    assert body["choices"][0]["text"] == "Candidate 0 answers: t5 t6 t7"  # the decoding reached the candidates


def test_models_and_health(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "fake-model"
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


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
