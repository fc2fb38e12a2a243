"""Every sampling field reaches the generator, and what prune cannot honour is a 400 naming it."""

import json

import openai
import pytest

from service.types import SamplingSpec
from tests.api_client import make_client

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def client():
    return make_client()


@pytest.fixture
def sdk(client):
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)


def test_sampling_options_from_a_stock_sdk_arrive_at_the_generator(client, sdk):
    sdk.chat.completions.create(
        **CHAT, max_tokens=32, frequency_penalty=1.5, presence_penalty=-0.5, logit_bias={"42": -100, "7": 3.5},
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.2, "min_tokens": 4, "stop_token_ids": [2],
                    "bad_words": ["delve", "tapestry"], "ignore_eos": True, "include_stop_str_in_output": True,
                    "skip_special_tokens": False})
    arrived = client.generator.samplings[-1]
    assert arrived.engine_options() == {
        "frequency_penalty": 1.5, "presence_penalty": -0.5, "repetition_penalty": 1.2, "top_k": 20, "min_p": 0.05,
        "min_tokens": 4, "logit_bias": {42: -100, 7: 3.5}, "stop_token_ids": [2], "bad_words": ["delve", "tapestry"],
        "ignore_eos": True, "include_stop_str_in_output": True, "skip_special_tokens": False,
    }


def test_a_plain_request_changes_no_engine_option(client):
    assert client.post("/v1/completions", json={"model": "fake-model", "prompt": "Hi"}).status_code == 200
    assert client.generator.samplings[-1].engine_options() == {}


@pytest.mark.parametrize("field, value", [
    ("frequency_penalty", 2.5), ("presence_penalty", -3), ("repetition_penalty", 0), ("top_k", -2),
    ("min_p", 1.5), ("min_tokens", -1), ("min_tokens", 40), ("logit_bias", {"dog": 1}), ("logit_bias", {"5": 101}),
    ("stop_token_ids", [-1]), ("bad_words", [" "]), ("bad_words", [f"w{i}" for i in range(65)]),
    # OpenAI fields prune cannot honour yet
    ("top_logprobs", 3), ("logprobs", 5), ("response_format", {"type": "xml"}),
    ("response_format", {"type": "json_schema"}), ("response_format", {"type": "json_schema", "json_schema": {"name": "a"}}),
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "auto"),
])
def test_a_field_out_of_range_or_not_honoured_is_a_400_naming_it(client, field, value):
    r = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 32, field: value})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"].split(".")[0] == field  # e.g. stop_token_ids.0: the very item


@pytest.mark.parametrize("field, value", [("echo", True), ("suffix", "the end"), ("logprobs", 21)])
def test_completion_fields_prune_cannot_honour_are_refused_by_name(sdk, field, value):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.completions.create(model="fake-model", prompt="Hi", **{field: value})
    assert refused.value.body["param"] == field


def test_do_nothing_values_of_those_fields_are_accepted(client):
    body = {**CHAT, "logprobs": False, "response_format": {"type": "text"}, "tool_choice": "none", "tools": []}
    assert client.post("/v1/chat/completions", json=body).status_code == 200


def test_json_object_reaches_the_generator_and_the_answer_parses(client, sdk):
    chat = sdk.chat.completions.create(**CHAT, max_tokens=32, response_format={"type": "json_object"})
    assert client.generator.samplings[-1].json_object and client.generator.samplings[-1].json_schema is None
    assert json.loads(chat.choices[0].message.content) == {"answer": "The longest candidate of them all."}


def test_a_json_schema_reaches_the_generator_in_its_own_key_order(client, sdk):
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
              "required": ["title", "body"]}
    sdk.chat.completions.create(**CHAT, response_format={"type": "json_schema",
                                                         "json_schema": {"name": "note", "schema": schema}})
    assert client.generator.samplings[-1].json_schema == json.dumps(schema)  # title before body, as the client wrote


def test_with_json_asked_a_candidate_cut_short_never_wins_over_one_that_parses():
    texts = ["Short.", "A far longer candidate that the token limit cuts before its closing brace."]
    client = make_client(texts=texts)
    body = {"model": "fake-model", "prompt": "Hi", "max_tokens": 6, "best_of": 2, "reward_model": "fake"}
    plain = client.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert plain.startswith("A far longer")  # the fake reward prefers the longer text, cut or not
    as_json = client.post("/v1/completions", json={**body, "response_format": {"type": "json_object"}}).json()
    assert json.loads(as_json["choices"][0]["text"]) == {"answer": "Short."}


def test_the_openai_generator_sends_the_options_in_vllms_names():
    from service.config import OpenAIGeneratorConfig
    from service.generator.openai import OpenAIGenerator
    from service.types import Prompt

    gen = OpenAIGenerator(OpenAIGeneratorConfig(url="http://127.0.0.1:9", served_model_name="m"))
    _, body = gen.request(Prompt(text="Hi"), SamplingSpec(max_tokens=8, top_k=5, logit_bias=((42, -100.0),)), 0)
    assert body["top_k"] == 5 and body["logit_bias"] == {"42": -100.0} and "min_p" not in body
    assert "response_format" not in body
    _, body = gen.request(Prompt(text="Hi"), SamplingSpec(max_tokens=8, json_schema='{"type": "object"}'), 0)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}


def test_a_named_ban_list_reaches_the_engine_as_bad_words_and_false_turns_the_default_off():
    client = make_client(bans={"slop": {"lexicon": "slop", "words": ["frankly"]}}, default_bans="slop")
    assert client.post("/v1/chat/completions", json={**CHAT, "bad_words": ["honestly"]}).status_code == 200
    banned = client.generator.samplings[-1].bad_words
    assert {"honestly", "frankly", "Frankly", "delve", "Delve", "tapestry"} <= set(banned)
    assert client.post("/v1/chat/completions", json={**CHAT, "bans": False}).status_code == 200
    assert client.generator.samplings[-1].bad_words == ()
    r = client.post("/v1/chat/completions", json={**CHAT, "bans": "mine"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "bans"


def test_completion_logprobs_come_back_one_entry_per_token_in_openais_shape(sdk):
    completion = sdk.completions.create(model="fake-model", prompt="Hi", logprobs=2, max_tokens=16)
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == len(choice.text.split())
    assert all(len(top) == 2 and max(top.values()) == lp for top, lp in zip(logprobs.top_logprobs, logprobs.token_logprobs))
    assert logprobs.text_offset[1] == len(logprobs.tokens[0])


def test_chat_logprobs_with_top_logprobs_in_openais_shape_and_none_when_not_asked(sdk):
    chat = sdk.chat.completions.create(**CHAT, logprobs=True, top_logprobs=3)
    content = chat.choices[0].logprobs.content
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.bytes == list(t.token.encode()) for t in content)
    assert sdk.chat.completions.create(**CHAT).choices[0].logprobs is None


def test_streamed_logprobs_come_with_the_chosen_text_at_selection(sdk):
    chunks = [c for c in sdk.chat.completions.create(**CHAT, logprobs=True, top_logprobs=2, stream=True) if c.choices]
    with_text = [c.choices[0] for c in chunks if c.choices[0].delta.content]
    assert len(with_text) == 1  # the stream waited for selection: the whole answer in one chunk
    tokens = with_text[0].logprobs.content
    assert "".join(t.token for t in tokens) == with_text[0].delta.content and all(len(t.top_logprobs) == 2 for t in tokens)
    pieces = [c.choices[0] for c in sdk.completions.create(model="fake-model", prompt="Hi", logprobs=1, stream=True)
              if c.choices and c.choices[0].text]
    assert "".join(pieces[0].logprobs.tokens) == pieces[0].text


def test_a_leader_stream_cannot_carry_logprobs(client):
    r = client.post("/v1/chat/completions", json={**CHAT, "logprobs": True, "stream": True, "stream_commit": "leader"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_commit"


def test_a_default_ban_list_leaves_a_request_its_own_bad_words():
    client = make_client(bans={"slop": {"lexicon": "slop"}}, default_bans="slop")
    own = [f"w{i}" for i in range(64)]
    assert client.post("/v1/chat/completions", json={**CHAT, "bad_words": own}).status_code == 200
    banned = client.generator.samplings[-1].bad_words
    assert len(banned) == 64 + 60 and set(own) <= set(banned)


class WordPieces:
    """A tokenizer where a word alone is three pieces and after a space one token, as
    SmolLM2's is for "vibrant"."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def encode(self, text, add_special_tokens=False):
        token = self.ids.setdefault(text, 10 + len(self.ids))
        return [token] if text.startswith(" ") else [1, 2, token]


def test_every_banned_word_is_banned_after_a_space_too():
    from service.generator.vllm import ban_sequences

    tokenizer = WordPieces()
    sequences = ban_sequences(tokenizer, ("vibrant", "vibrant", " bustling"))
    # vLLM's own bad_words keeps " vibrant" only when it has as many tokens as "vibrant": here it would not.
    assert sequences == (tuple(tokenizer.encode("vibrant")), tuple(tokenizer.encode(" vibrant")),
                         tuple(tokenizer.encode("bustling")), tuple(tokenizer.encode(" bustling")))


def test_one_token_bans_go_to_the_engine_as_the_lowest_bias_and_longer_ones_as_sequences():
    import functools

    from service.config import VLLMGeneratorConfig
    from service.errors import BadRequest
    from service.generator.vllm import MAX_BANNED_SEQUENCES, VLLMGenerator, ban_sequences

    generator = VLLMGenerator(VLLMGeneratorConfig(model="embedded:smollm2-135m-instruct"))
    tokenizer = WordPieces()
    generator.banned_sequences = functools.partial(ban_sequences, tokenizer)
    spaced = tokenizer.encode(" vibrant")[0]
    options, sequences = generator._engine_options(
        SamplingSpec(max_tokens=8, bad_words=("vibrant",), logit_bias=((7, 2.0), (spaced, 5.0))))
    assert options["logit_bias"] == {7: 2.0, spaced: -100.0}  # the ban wins over a bias the request set
    assert sequences == [tokenizer.encode("vibrant")] and "bad_words" not in options
    assert generator._engine_options(SamplingSpec(max_tokens=8)) == ({}, None)
    # Only sequences of two tokens or more count against the engine's limit: here, each word's bare form.
    words = tuple(f"w{i}" for i in range(MAX_BANNED_SEQUENCES))
    assert len(generator._engine_options(SamplingSpec(max_tokens=8, bad_words=words))[1]) == MAX_BANNED_SEQUENCES
    with pytest.raises(BadRequest) as too_many:
        generator._engine_options(SamplingSpec(max_tokens=8, bad_words=words + ("one more",)))
    assert too_many.value.param == "bad_words"
