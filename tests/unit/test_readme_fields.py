"""The API field table (docs/api.md, linked from the README), walked with the stock
OpenAI SDK: every field it lists has its effect, is refused with a 400 naming it, or is
accepted and ignored, as its row says.

The table is read from docs/api.md, so a row added there without a call here fails,
and so does a field whose behaviour stops matching its row.
"""

import json
import re
from pathlib import Path

import openai
import pytest

from tests.api_client import make_client

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
MODEL = "fake-model"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say something about rivers."}]}


def readme_fields() -> dict[str, str]:
    """Field name -> the status its row begins with (honoured, accepted or refused)."""
    text = API_PAGE.read_text()
    start = text.index("Fields: every field of OpenAI's completions and chat requests")
    table = text[start:].split("\n\n")[1]
    fields: dict[str, str] = {}
    for row in table.splitlines()[2:]:  # after the header and its rule
        names, status = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
        for name in re.findall(r"`([a-z_][a-z_.]*)`", names):
            fields.setdefault(name, re.match(r"[a-z]+", status).group(0))
    return fields


@pytest.fixture(scope="module")
def client():
    # Texts that name their prompt, so the prompt's effect shows; a ban list to name.
    return make_client(texts=[], bans={"slop": {"lexicon": "slop"}})


@pytest.fixture(scope="module")
def sdk(client):
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def arrived(client):
    return client.generator.samplings[-1]


def refused(call) -> str:
    with pytest.raises(openai.BadRequestError) as error:
        call()
    return error.value.body["param"]


def chat(sdk, **kw):
    return sdk.chat.completions.create(**{**CHAT, **kw})


def complete(sdk, prompt="Say something about rivers.", **kw):
    return sdk.completions.create(model=MODEL, prompt=prompt, **kw)


# Each field's call and what a user would see of it. A check returns nothing; it asserts.
def check_model(sdk, client):
    assert complete(sdk).model == MODEL
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="another-model", prompt="Hi")


def check_prompt(sdk, client):
    assert "Name a river" in complete(sdk, prompt="Name a river.").choices[0].text
    batch = complete(sdk, prompt=["Name a river.", "Name a hill."])  # a batch: one choice per prompt, in order
    assert ["river" in batch.choices[0].text, "hill" in batch.choices[1].text] == [True, True]
    assert [c.index for c in batch.choices] == [0, 1]
    assert complete(sdk, prompt=[11, 12]).choices[0].text  # token ids


def check_messages(sdk, client):
    assert "rivers" in chat(sdk).choices[0].message.content


def check_max_tokens(sdk, client):
    choice = complete(sdk, max_tokens=3).choices[0]
    assert len(choice.text.split()) == 3 and choice.finish_reason == "length"


def check_max_completion_tokens(sdk, client):
    choice = chat(sdk, max_completion_tokens=2).choices[0]
    assert len(choice.message.content.split()) == 2 and choice.finish_reason == "length"


def check_temperature(sdk, client):
    complete(sdk, temperature=0.3)
    assert arrived(client).temperature == 0.3


def check_top_p(sdk, client):
    complete(sdk, top_p=0.8)
    assert arrived(client).top_p == 0.8


def check_n(sdk, client):
    assert len(complete(sdk, n=2, extra_body={"best_of": 3}).choices) == 2


def check_stop(sdk, client):
    full = complete(sdk).choices[0].text
    assert len(complete(sdk, stop=["answers:"]).choices[0].text) < len(full)


def check_seed(sdk, client):
    complete(sdk, seed=41)
    assert arrived(client).seed == 41


def check_stream(sdk, client):
    pieces = [c.choices[0].text for c in complete(sdk, stream=True, seed=3) if c.choices]
    assert "".join(pieces) == complete(sdk, seed=3).choices[0].text


def check_stream_options_include_usage(sdk, client):
    chunks = list(complete(sdk, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices


OPENAI_OWN = {"frequency_penalty", "presence_penalty", "logit_bias"}  # the SDK's own arguments; the rest ride in extra_body


def engine_option(name, value, expected=None):
    def check(sdk, client):
        complete(sdk, **({name: value} if name in OPENAI_OWN else {"extra_body": {name: value}}))
        assert arrived(client).engine_options()[name] == (value if expected is None else expected)
    return check


def check_user(sdk, client):
    assert complete(sdk, user="someone").choices[0].text


def check_best_of(sdk, client):
    reranking = complete(sdk, extra_body={"best_of": 2}).model_extra["reranking"]
    assert (reranking["best_of"], reranking["candidates_generated"]) == (2, 2)


def ignored(value):
    """Accepted, and the generator is asked exactly what it is asked without the field."""
    def check(sdk, client, field):
        with_it = chat(sdk, seed=7, extra_body={field: value}).choices[0].message.content
        asked = arrived(client)
        assert with_it == chat(sdk, seed=7).choices[0].message.content and asked == arrived(client)
    check.status = "accepted"
    return check


def check_name(sdk, client, field):
    named = [{"role": "user", "content": "Say something about rivers.", "name": "ana"}]
    assert chat(sdk, seed=7, messages=named).choices[0].message.content == chat(sdk, seed=7).choices[0].message.content


check_name.status = "accepted"


def check_bans(sdk, client):
    complete(sdk, extra_body={"bans": "slop"})
    assert {"delve", "Delve", "vibrant"} <= set(arrived(client).bad_words)
    complete(sdk, extra_body={"bans": False})
    assert arrived(client).bad_words == ()


def check_logprobs(sdk, client):
    choice = complete(sdk, logprobs=2).choices[0]
    assert "".join(choice.logprobs.tokens) == choice.text and all(len(t) == 2 for t in choice.logprobs.top_logprobs)
    content = chat(sdk, logprobs=True).choices[0].logprobs.content
    assert len(content) == len(chat(sdk).choices[0].message.content.split())


def check_top_logprobs(sdk, client):
    content = chat(sdk, logprobs=True, top_logprobs=3).choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 3 for t in content)


def check_response_format(sdk, client):
    answer = chat(sdk, response_format={"type": "json_object"}).choices[0].message.content
    assert isinstance(json.loads(answer), dict)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    chat(sdk, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert json.loads(arrived(client).json_schema) == schema


def refusal(value, endpoint="completions"):
    def check(sdk, client, field):
        ask = complete if endpoint == "completions" else chat
        assert refused(lambda: ask(sdk, extra_body={field: value})) == field
    check.status = "refused"
    return check


CHECKS = {
    "model": check_model, "prompt": check_prompt, "messages": check_messages, "max_tokens": check_max_tokens,
    "max_completion_tokens": check_max_completion_tokens, "temperature": check_temperature,
    "top_p": check_top_p, "n": check_n, "stop": check_stop, "seed": check_seed, "stream": check_stream,
    "stream_options.include_usage": check_stream_options_include_usage,
    "frequency_penalty": engine_option("frequency_penalty", 1.5),
    "presence_penalty": engine_option("presence_penalty", -0.5),
    "logit_bias": engine_option("logit_bias", {"42": -100}, {42: -100}),
    "repetition_penalty": engine_option("repetition_penalty", 1.2), "top_k": engine_option("top_k", 20),
    "min_p": engine_option("min_p", 0.05), "min_tokens": engine_option("min_tokens", 2),
    "stop_token_ids": engine_option("stop_token_ids", [2]), "bad_words": engine_option("bad_words", ["delve"]),
    "ignore_eos": engine_option("ignore_eos", True),
    "include_stop_str_in_output": engine_option("include_stop_str_in_output", True),
    "skip_special_tokens": engine_option("skip_special_tokens", False),
    "user": check_user, "safety_identifier": ignored("user-42"), "best_of": check_best_of,
    "store": ignored(True), "metadata": ignored({"team": "a"}), "service_tier": ignored("flex"),
    "prompt_cache_key": ignored("k"), "prompt_cache_retention": ignored("24h"),
    "prompt_cache_options": ignored({"ttl": "1h"}), "parallel_tool_calls": ignored(False),
    "prediction": ignored({"type": "content", "content": "Rivers run."}), "name": check_name,
    "modalities": refusal(["text", "audio"], "chat"), "audio": refusal({"voice": "alloy", "format": "wav"}, "chat"),
    "reasoning_effort": refusal("high", "chat"), "verbosity": refusal("low", "chat"),
    "web_search_options": refusal({}, "chat"), "moderation": refusal({"mode": "block"}, "chat"),
    "bans": check_bans, "logprobs": check_logprobs, "top_logprobs": check_top_logprobs,
    "response_format": check_response_format,
    "echo": refusal(True), "suffix": refusal("and then"),
    "tools": refusal([{"type": "function", "function": {"name": "f"}}], "chat"), "tool_choice": refusal("auto", "chat"),
    "functions": refusal([{"name": "f"}], "chat"), "function_call": refusal("auto", "chat"),
}


def test_the_readme_table_and_these_checks_name_the_same_fields():
    assert set(readme_fields()) == set(CHECKS)


def test_every_field_of_openais_request_schemas_has_a_row():
    from openai.types import completion_create_params as completions
    from openai.types.chat import completion_create_params as chat_completions

    openai_fields = set(completions.CompletionCreateParamsBase.__annotations__)
    openai_fields |= set(chat_completions.CompletionCreateParamsBase.__annotations__) | {"stream"}
    assert len(openai_fields) > 40  # the SDK's schemas were read
    rows = set(readme_fields())
    assert {f for f in openai_fields if f not in rows and not any(r.startswith(f + ".") for r in rows)} == set()


@pytest.mark.parametrize("field", sorted(CHECKS))
def test_each_readme_field_is_honoured_or_refused_as_its_row_says(sdk, client, field):
    status = readme_fields()[field]
    check = CHECKS[field]
    if hasattr(check, "status"):  # refused, or accepted and ignored: the row says which
        assert status == check.status, (field, status)
        check(sdk, client, field)
    else:
        assert status in ("honoured", "accepted"), (field, status)
        check(sdk, client)
