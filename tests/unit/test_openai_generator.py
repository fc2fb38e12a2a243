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
from fastapi.responses import JSONResponse, StreamingResponse

from service.config import FakeRewardConfig, OpenAIGeneratorConfig
from service.errors import BadRequest, Overloaded
from service.generator import make_generator
from service.generator.openai import GeneratorServiceError
from service.pruning import PruningPlan
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from service.types import Deadline, Prompt, SamplingSpec

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def words_for(seed: int) -> list[str]:
    """What the server answers to a seed: candidates differ, and seed 1's start is the longest."""
    return [WORDS[(seed + k) % len(WORDS)] for k in range(200)]


class StreamingServer:
    """Streams one word per chunk every `seconds_per_token`, with vLLM's continuous usage."""

    def __init__(self, seconds_per_token=0.02):
        self.bodies: list[dict] = []
        self.cut = 0  # streams closed by the client before they finished
        self.app = FastAPI()
        self.app.post("/v1/completions")(self.completions)
        self.app.post("/v1/chat/completions")(self.chat)
        self.app.get("/v1/models")(lambda: {"data": [{"id": "remote-model"}]})
        self.seconds_per_token = seconds_per_token

    async def completions(self, request: Request):
        return await self.answer(request, chat=False)

    async def chat(self, request: Request):
        return await self.answer(request, chat=True)

    async def answer(self, request: Request, chat: bool):
        body = await request.json()
        self.bodies.append(body)
        if body.get("max_tokens", 0) > 1000:
            return JSONResponse({"error": {"message": "max_tokens is too large", "param": "max_tokens"}}, 400)
        return StreamingResponse(self.events(body, chat), media_type="text/event-stream")

    async def events(self, body: dict, chat: bool):
        words = words_for(body.get("seed", 0))[: body["max_tokens"]]
        done = False
        try:
            for k, word in enumerate(words):
                await asyncio.sleep(self.seconds_per_token)
                piece = word if k == 0 else " " + word
                last = k == len(words) - 1
                choice = {"index": 0, "finish_reason": "length" if last else None}
                choice |= {"delta": {"content": piece}} if chat else {"text": piece}
                usage = {"prompt_tokens": 5, "completion_tokens": k + 1, "total_tokens": 6 + k}
                yield f"data: {json.dumps({'choices': [choice], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"
            done = True
        finally:
            if not done:
                self.cut += 1


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


def generator(url, judge=None):
    return make_generator(OpenAIGeneratorConfig(url=url, served_model_name="remote-model"), judge)


def collect(gen, prompt, sampling, n, budget_ms=10_000, pruning=None):
    async def run():
        return [c async for c in gen.generate(prompt, sampling, n, Deadline.after_ms(budget_ms), pruning)]

    return asyncio.run(run())


def test_completions_one_streamed_request_per_candidate(server):
    server.bodies.clear()
    sampling = SamplingSpec(max_tokens=4, temperature=0.7, top_p=0.9, stop=("zzz",), seed=10)
    candidates = collect(generator(server.url), Prompt(text="Say something."), sampling, 3)
    assert sorted(c.index for c in candidates) == [0, 1, 2]
    for c in candidates:
        assert c.text == " ".join(words_for(10 + c.index)[:4])
        assert (c.completion_tokens, c.prompt_tokens, c.finish_reason, c.finished) == (4, 5, "length", True)
    assert sorted(b["seed"] for b in server.bodies) == [10, 11, 12]
    body = server.bodies[0]
    assert (body["model"], body["prompt"], body["max_tokens"], body["temperature"], body["top_p"], body["stop"]) == (
        "remote-model", "Say something.", 4, 0.7, 0.9, ["zzz"])
    assert body["stream"] is True and body["stream_options"]["continuous_usage_stats"] is True


def test_chat_goes_to_the_chat_endpoint_with_the_messages(server):
    server.bodies.clear()
    prompt = Prompt(messages=({"role": "user", "content": "Hi"},))
    [candidate] = collect(generator(server.url), prompt, SamplingSpec(max_tokens=3, seed=0), 1)
    assert candidate.text == "alpha beta gamma"
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "Hi"}] and "prompt" not in server.bodies[0]


def test_the_deadline_returns_partials_and_closes_the_streams(server):
    cut_before = server.cut
    started = time.monotonic()
    candidates = collect(generator(server.url), Prompt(text="Go on."), SamplingSpec(max_tokens=200, seed=0), 2,
                         budget_ms=500)
    assert time.monotonic() - started < 0.5 + 0.5
    assert all(not c.finished and c.text and 0 < c.completion_tokens < 200 for c in candidates)
    give_up = time.monotonic() + 5
    while server.cut < cut_before + 2 and time.monotonic() < give_up:
        time.sleep(0.05)
    assert server.cut == cut_before + 2  # the server saw both streams end early: vLLM aborts those requests


def test_pruning_judges_partial_texts_and_stops_the_weak(server):
    # At 2 tokens the starts are "alpha beta" (seed 0), "beta gamma", "gamma delta",
    # "delta epsilon" (seed 3): the fake judge keeps the two longest.
    judge = StaticCatalog({"fake": FakeReward(FakeRewardConfig())}, "fake")
    candidates = collect(generator(server.url, judge), Prompt(text="Go on."), SamplingSpec(max_tokens=20, seed=0), 4,
                         pruning=PruningPlan((2,), 0.5, 1, "fake"))
    pruned = sorted(c.index for c in candidates if c.pruned)
    assert pruned == [0, 1] and all(c.completion_tokens < 20 for c in candidates if c.pruned)
    assert sorted(c.index for c in candidates if c.finished) == [2, 3]


def test_load_counts_running_candidates(server):
    gen = generator(server.url)

    async def run():
        stream = gen.generate(Prompt(text="x"), SamplingSpec(max_tokens=10), 3, Deadline.after_ms(5000))
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.1)
        during = await gen.load()
        await first
        async for _ in stream:
            pass
        return during, await gen.load()

    assert asyncio.run(run()) == (3, 0)


def test_a_refusal_keeps_the_servers_message_and_parameter(server):
    with pytest.raises(BadRequest) as info:
        collect(generator(server.url), Prompt(text="x"), SamplingSpec(max_tokens=5000), 1)
    assert info.value.param == "max_tokens" and "too large" in info.value.message


def test_an_unreachable_server_is_a_502_and_not_ready():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nobody listens once the socket closes
    gen = generator(url)
    with pytest.raises(GeneratorServiceError) as info:
        collect(gen, Prompt(text="x"), SamplingSpec(max_tokens=5), 1)
    assert info.value.status == 502 and url in info.value.message
    with pytest.raises(Overloaded):
        asyncio.run(gen.check_ready())
