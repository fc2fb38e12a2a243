"""The `openai` generator against a small OpenAI-style streaming server started
here on loopback: what it sends, what it reads back, and that stopping a
candidate closes its stream on the server."""

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from service.config import FakeRewardConfig, OpenAIGeneratorConfig
from service.errors import BadRequest, Overloaded
from service.generator import make_generator
from service.generator.openai import GeneratorServiceError
from service.pruning import PruningPlan
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from service.types import Deadline, Prompt, SamplingSpec
from tests.generator_load import load_during_and_after

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def words_for(seed: int) -> list[str]:
    """What the server answers to a seed: candidates differ."""
    return [WORDS[(seed + k) % len(WORDS)] for k in range(500)]


def chunk(chat: bool, piece: str | None, finish: str | None = None, usage: dict | None = None) -> str:
    choice = {"index": 0, "finish_reason": finish}
    if piece is not None:
        choice |= {"delta": {"content": piece}} if chat else {"text": piece}
    return f"data: {json.dumps({'choices': [choice], **({'usage': usage} if usage else {})})}\n\n"


class StreamingServer:
    """Streams one word per chunk every `seconds_per_token`, as vLLM does: usage on
    every chunk (`usage="continuous"`), only on a last choice-less chunk ("final"),
    or never ("none"). Prompts starting with "status-" or "fail-" misbehave."""

    PROMPT_TOKENS = 5

    def __init__(self, seconds_per_token=0.02):
        self.seconds_per_token = seconds_per_token
        self.usage = "continuous"
        self.bodies: list[dict] = []
        self.keys: list[str | None] = []  # each request's Authorization header
        self.cut: list[str] = []  # the prompts of streams the client closed before the end
        self.app = FastAPI()
        self.app.post("/v1/completions")(self.completions)
        self.app.post("/v1/chat/completions")(self.chat)
        self.app.get("/v1/models")(self.models)
        self.up = True  # False: /v1/models answers 503, as a server still loading its model
        self.app.post("/detokenize")(self.detokenize)
        self.app.post("/tokenize")(self.tokenize)
        self.tokenizes = 0
        self.vllm = True  # False: a server without vLLM's /tokenize

    async def models(self):
        if not self.up:
            return JSONResponse({"error": {"message": "loading"}}, 503)
        return {"data": [{"id": "remote-model"}]}

    async def tokenize(self, request: Request):
        """As vLLM's server, with a tokenizer where a word after a space is one token and alone three."""
        self.tokenizes += 1
        if not self.vllm:
            return JSONResponse({"detail": "Not Found"}, 404)
        text = (await request.json())["prompt"]
        token = 1000 + sum(map(ord, text.strip()))
        return {"tokens": [token] if text.startswith(" ") else [7, 8, token], "count": 1}

    async def detokenize(self, request: Request):
        """As vLLM's server: token ids in, their text out; ids past its vocabulary are a 400."""
        tokens = (await request.json())["tokens"]
        if any(t >= len(WORDS) for t in tokens):
            return JSONResponse({"error": {"message": "token id out of vocabulary", "param": None}}, 400)
        return {"prompt": " ".join(WORDS[t] for t in tokens)}

    async def completions(self, request: Request):
        self.keys.append(request.headers.get("authorization"))
        return await self.answer(await request.json(), chat=False)

    async def chat(self, request: Request):
        self.keys.append(request.headers.get("authorization"))
        return await self.answer(await request.json(), chat=True)

    async def answer(self, body: dict, chat: bool):
        self.bodies.append(body)
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        prompt = " ".join(map(str, prompt)) if isinstance(prompt, list) else prompt  # token ids
        if body.get("max_tokens", 0) > 1000:
            return JSONResponse({"error": {"message": "max_tokens is too large", "param": "max_tokens"}}, 400)
        if prompt.startswith("status-"):  # e.g. "status-500": that status, with a body no client should see
            return PlainTextResponse("Traceback: secret internals", int(prompt.split("-")[1]))
        return StreamingResponse(self.events(body, chat, prompt), media_type="text/event-stream")

    def usage_of(self, tokens: int) -> dict:
        return {"prompt_tokens": self.PROMPT_TOKENS, "completion_tokens": tokens,
                "total_tokens": self.PROMPT_TOKENS + tokens}

    async def events(self, body: dict, chat: bool, prompt: str):
        continuous = self.usage == "continuous"
        done = False
        try:
            if chat:  # vLLM's chat stream opens with the role and no text
                yield chunk(True, "", usage=self.usage_of(0) if continuous else None)
            sent, finish = 0, "length"
            for word in words_for(body.get("seed", 0))[: body["max_tokens"]]:
                await asyncio.sleep(self.seconds_per_token)
                if prompt.startswith("fail-") and sent == 2:
                    error = {"message": "engine died", "type": "InternalServerError", "param": None, "code": 500}
                    yield f"data: {json.dumps({'error': error})}\n\n"
                    break
                if word in body.get("stop", []):
                    finish = "stop"
                    break
                sent += 1
                yield chunk(chat, word if sent == 1 else " " + word, usage=self.usage_of(sent) if continuous else None)
            yield chunk(chat, "" if chat else None, finish, usage=self.usage_of(sent) if continuous else None)
            if self.usage == "final":
                yield f"data: {json.dumps({'choices': [], 'usage': self.usage_of(sent)})}\n\n"
            yield "data: [DONE]\n\n"
            done = True
        finally:
            if not done:
                self.cut.append(prompt)


@pytest.fixture(scope="module")
def server():
    fake = StreamingServer()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield fake
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fresh(server):
    server.bodies.clear()
    server.keys.clear()
    server.usage = "continuous"
    yield server
    server.usage = "continuous"


def generator(url, judge=None, **config):
    return make_generator(OpenAIGeneratorConfig(url=url, served_model_name="remote-model", **config), judge)


def collect(gen, prompt, sampling, n, budget_ms=20_000, pruning=None):
    async def run():
        return [c async for c in gen.generate(prompt, sampling, n, Deadline.after_ms(budget_ms), pruning)]

    return sorted(asyncio.run(run()), key=lambda c: c.index)


def test_completions_one_streamed_request_per_candidate(fresh):
    sampling = SamplingSpec(max_tokens=4, temperature=0.7, top_p=0.9, stop=("zzz",), seed=10)
    candidates = collect(generator(fresh.url), Prompt(text="Say something."), sampling, 3)
    assert [c.index for c in candidates] == [0, 1, 2]
    for c in candidates:
        assert c.text == " ".join(words_for(10 + c.index)[:4])
        assert (c.completion_tokens, c.prompt_tokens, c.finish_reason, c.finished) == (4, 5, "length", True)
    assert sorted(b["seed"] for b in fresh.bodies) == [10, 11, 12]
    for body in fresh.bodies:
        assert {k: body[k] for k in ("model", "prompt", "max_tokens", "temperature", "top_p", "stop", "stream")} == {
            "model": "remote-model", "prompt": "Say something.", "max_tokens": 4, "temperature": 0.7, "top_p": 0.9,
            "stop": ["zzz"], "stream": True}
        assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
        assert "messages" not in body


def test_chat_goes_to_the_chat_endpoint_with_the_messages(fresh):
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})
    sampling = SamplingSpec(max_tokens=6, stop=("delta",), seed=0)
    candidates = collect(generator(fresh.url), Prompt(messages=messages), sampling, 2)
    # Seed 0 meets the stop word "delta" after three words; seed 1 after two.
    assert [(c.text, c.completion_tokens, c.finish_reason) for c in candidates] == [
        ("alpha beta gamma", 3, "stop"), ("beta gamma", 2, "stop")]
    assert all(c.prompt_tokens == 5 and c.finished for c in candidates)
    assert sorted(b["seed"] for b in fresh.bodies) == [0, 1]
    for body in fresh.bodies:
        assert body["messages"] == [dict(m) for m in messages] and "prompt" not in body
        assert (body["model"], body["max_tokens"], body["stop"], body["stream"]) == ("remote-model", 6, ["delta"], True)


def test_no_seed_and_no_stop_are_left_out(fresh):
    collect(generator(fresh.url), Prompt(text="x"), SamplingSpec(max_tokens=2), 2)
    assert all("seed" not in b and "stop" not in b for b in fresh.bodies) and len(fresh.bodies) == 2
    assert fresh.keys == [None, None]


def test_the_api_key_is_a_bearer_token(fresh):
    collect(generator(fresh.url + "/", api_key="sk-test"), Prompt(text="x"), SamplingSpec(max_tokens=2), 1)
    assert fresh.keys == ["Bearer sk-test"]


@pytest.mark.parametrize("usage, prompt_tokens", [("final", 5), ("none", 0)])
def test_without_continuous_usage_the_chunks_are_counted(fresh, usage, prompt_tokens):
    fresh.usage = usage
    [candidate] = collect(generator(fresh.url), Prompt(text="x"), SamplingSpec(max_tokens=3, seed=2), 1)
    assert candidate.text == "gamma delta epsilon"
    assert (candidate.completion_tokens, candidate.prompt_tokens) == (3, prompt_tokens)
    # Pruning still sees its checkpoints: token counts come from the chunks meanwhile.
    judge = StaticCatalog({"fake": FakeReward(FakeRewardConfig())}, "fake")
    candidates = collect(generator(fresh.url, judge), Prompt(text="x"), SamplingSpec(max_tokens=50, seed=0), 2,
                         pruning=PruningPlan((2,), 0.5, 1, "fake"))
    assert [c.pruned for c in candidates] == [False, True]


def test_the_deadline_returns_partials_and_closes_the_streams(fresh):
    gen = generator(fresh.url)  # built first: making an HTTP client can take a while on a busy machine
    started = time.monotonic()
    candidates = collect(gen, Prompt(text="deadline"), SamplingSpec(max_tokens=500, seed=0), 3, budget_ms=2000)
    elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 5  # the whole answers would take 500 * 0.02 s = 10 s
    for c in candidates:
        assert not c.finished and not c.pruned and c.finish_reason == "length"
        assert 0 < c.completion_tokens < 500 and c.text == " ".join(words_for(c.index)[: c.completion_tokens])
        assert c.prompt_tokens == 5
    give_up = time.monotonic() + 5
    while fresh.cut.count("deadline") < 3 and time.monotonic() < give_up:
        time.sleep(0.05)
    assert fresh.cut.count("deadline") == 3  # the server saw all three streams end early: vLLM aborts those


def test_pruning_judges_partial_texts_and_stops_the_weak(fresh):
    # At 2 tokens the starts are "alpha beta" (seed 0), "beta gamma", "gamma delta",
    # "delta epsilon" (seed 3): the fake judge (longer is better) keeps the two longest.
    judge = StaticCatalog({"fake": FakeReward(FakeRewardConfig())}, "fake")
    candidates = collect(generator(fresh.url, judge), Prompt(text="prune"), SamplingSpec(max_tokens=50, seed=0), 4,
                         pruning=PruningPlan((2,), 0.5, 1, "fake"))
    assert [c.pruned for c in candidates] == [True, True, False, False]
    assert all(not c.finished and 2 <= c.completion_tokens < 50 for c in candidates[:2])
    assert all(c.finished and c.completion_tokens == 50 for c in candidates[2:])
    give_up = time.monotonic() + 5
    while fresh.cut.count("prune") < 2 and time.monotonic() < give_up:
        time.sleep(0.05)
    assert fresh.cut.count("prune") == 2


def test_load_counts_running_candidates(fresh):
    # The answers take 50 * 0.02 s = 1 s; the load is read after 0.2 s.
    assert load_during_and_after(generator(fresh.url), candidates=3, max_tokens=50, settle_s=0.2) == (3, 0)


def test_a_refusal_keeps_the_servers_message_and_parameter(fresh):
    with pytest.raises(BadRequest) as info:
        collect(generator(fresh.url), Prompt(text="x"), SamplingSpec(max_tokens=5000), 1)
    assert (info.value.param, info.value.message, info.value.status) == ("max_tokens", "max_tokens is too large", 400)


@pytest.mark.parametrize("status", [404, 422])
def test_a_refusal_without_an_envelope_shows_no_body(fresh, status):
    with pytest.raises(BadRequest) as info:
        collect(generator(fresh.url), Prompt(text=f"status-{status}"), SamplingSpec(max_tokens=5), 1)
    assert info.value.param == "prompt" and "secret" not in info.value.message


def test_a_chat_refusal_names_the_messages(fresh):
    with pytest.raises(BadRequest) as info:
        chat = Prompt(messages=({"role": "user", "content": "status-422"},))
        collect(generator(fresh.url), chat, SamplingSpec(max_tokens=5), 1)
    assert info.value.param == "messages"


def test_candidates_failing_together_raise_one_error_and_log_none(fresh, caplog):
    import gc

    with pytest.raises(GeneratorServiceError):
        collect(generator(fresh.url), Prompt(text="status-500"), SamplingSpec(max_tokens=5), 3)
    gc.collect()  # an unread task exception is logged when the task is collected
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.mark.parametrize("prompt", ["status-500", "status-503", "fail-midstream"])
def test_a_server_failure_is_a_502(fresh, prompt):
    with pytest.raises(GeneratorServiceError) as info:
        collect(generator(fresh.url), Prompt(text=prompt), SamplingSpec(max_tokens=5), 1)
    assert info.value.status == 502 and info.value.type == "server_error"
    assert "secret" not in info.value.message and "engine died" not in info.value.message


def test_token_id_prompts_are_sent_as_ids_and_decoded_by_the_server(fresh):
    assert asyncio.run(generator(fresh.url).detokenize((0, 2))) == "alpha gamma"
    candidates = collect(generator(fresh.url), Prompt(token_ids=(0, 2), text="alpha gamma"), SamplingSpec(max_tokens=3), 1)
    assert fresh.bodies[-1]["prompt"] == [0, 2] and candidates[0].completion_tokens == 3
    with pytest.raises(BadRequest) as refused:
        asyncio.run(generator(fresh.url).detokenize((0, 99)))
    assert refused.value.param == "prompt"


def test_ready_follows_the_server(server):
    gen = generator(server.url)

    async def readiness() -> list[str]:
        seen = []
        for up in (True, False, True):  # answering, still loading its model, back
            server.up = up
            try:
                await gen.check_ready()
                seen.append("ready")
            except Overloaded as refused:
                seen.append(f"{refused.status} {refused.code}")
        return seen

    try:
        assert asyncio.run(readiness()) == ["ready", "503 engine_unavailable", "ready"]
    finally:
        server.up = True


def test_an_unreachable_server_is_a_502_and_not_ready(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nobody listens once the socket closes
    gen = generator(url)
    with pytest.raises(GeneratorServiceError) as info:
        collect(gen, Prompt(text="x"), SamplingSpec(max_tokens=5), 1)
    assert info.value.status == 502 and "ConnectError" in info.value.message
    assert url not in info.value.message and "the generator server" in info.value.message  # its role, not its address
    assert url in caplog.text  # for the operator
    with pytest.raises(Overloaded) as info:
        asyncio.run(gen.check_ready())
    assert info.value.code == "engine_unavailable" and info.value.status == 503
    assert url not in info.value.message and int(info.value.headers["Retry-After"]) >= 1


def test_banned_words_one_token_forms_also_go_to_the_server_as_the_lowest_bias(server):
    gen = make_generator(OpenAIGeneratorConfig(url=server.url, served_model_name="remote-model"))
    sampling = SamplingSpec(max_tokens=3, bad_words=("vibrant", "Vibrant"), logit_bias=((5, 1.0),))

    async def go():
        async for _ in gen.generate(Prompt(text="Hi"), sampling, 1, Deadline.after_ms(10_000)):
            pass
        asked = server.tokenizes
        async for _ in gen.generate(Prompt(text="Hi"), sampling, 1, Deadline.after_ms(10_000)):
            pass
        return asked, server.tokenizes

    before = server.tokenizes
    asked, after = asyncio.run(go())
    assert asked - before == 4 and after == asked  # each form once, then from the cache
    body = server.bodies[-1]
    spaced = {str(1000 + sum(map(ord, w))): -100.0 for w in ("vibrant", "Vibrant")}
    assert body["bad_words"] == ["vibrant", "Vibrant"] and body["logit_bias"] == {"5": 1.0} | spaced


def test_a_server_without_tokenize_gets_the_banned_words_alone_and_is_not_asked_again(server):
    gen = make_generator(OpenAIGeneratorConfig(url=server.url, served_model_name="remote-model"))
    server.vllm = False
    try:
        before = server.tokenizes

        async def two_requests():
            for words in (("vibrant",), ("bustling",)):
                async for _ in gen.generate(Prompt(text="Hi"), SamplingSpec(max_tokens=2, bad_words=words), 1,
                                            Deadline.after_ms(10_000)):
                    pass

        asyncio.run(two_requests())
        assert server.bodies[-1]["bad_words"] == ["bustling"] and "logit_bias" not in server.bodies[-1]
        assert server.tokenizes - before == 2  # both forms of the first list; none after the 404s
    finally:
        server.vllm = True
