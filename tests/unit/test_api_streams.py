"""The HTTP API's streams (OpenAI server-sent events), over the fake generator, without Ray."""

import json

import pytest

from tests.api_client import TEXTS, complete, make_client, metric


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
