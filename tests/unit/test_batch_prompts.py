"""A batch of prompts in /v1/completions: each reranked on its own, choices in OpenAI's order."""

import openai

from tests.api_client import TEXTS, make_client


def test_a_batch_answers_each_prompt_with_its_own_reranked_choices_in_openais_order():
    client = make_client()
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    one = client.post("/v1/completions", json={"model": "fake-model", "prompt": "first", "n": 2}).json()
    batch = sdk.completions.create(model="fake-model", prompt=["first", "second", "third"], n=2, max_tokens=16)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3, 4, 5]
    # Prompt 0's choices are what it gets alone: the fake reward (length) ranks the same candidates.
    assert [c.text for c in batch.choices[:2]] == [c["text"] for c in one["choices"]] == [TEXTS[1], TEXTS[2]]
    accounts = batch.model_extra["reranking"]
    assert len(accounts) == 3 and all(a["candidates_scored"] == 3 for a in accounts)
    # Usage is the sum of the prompts' own: three prompts of one word, three candidates each.
    assert batch.usage.prompt_tokens == 3 * one["usage"]["prompt_tokens"]
    assert batch.usage.completion_tokens == 3 * one["usage"]["completion_tokens"]
    assert len(client.generator.samplings) == 4  # one generate call per prompt


def test_a_prompt_that_fails_fails_the_batch_with_its_own_error():
    client = make_client()
    r = client.post("/v1/completions", json={"model": "fake-model", "prompt": [[1, 2], [1, 60000]]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"  # not in the fake's vocabulary
