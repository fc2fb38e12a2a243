"""The real embedded default: vLLM CPU serving SmolLM2-135M-Instruct, slop reward.

Starts `python -m service.serve deploy/local.yaml` once for the module (about a
minute on 2 cores) and talks to it over HTTP like a user would.
"""

import json
import time

import httpx
import openai
import pytest

from tests.metrics_text import sample
from tests.service_process import ROOT, ServiceProcess

MODEL = "smollm2-135m-instruct"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    proc = ServiceProcess(ROOT / "deploy" / "local.yaml", tmp_path_factory.mktemp("e2e") / "service.log", ready_timeout_s=900)
    print(f"embedded default ready in {proc.ready_s:.0f} s")
    yield proc
    code, strays = proc.stop()
    assert code == 0, proc.tail()
    assert strays == [], "processes left behind after Ctrl-C"


def post(service, path, body, timeout=120):
    return httpx.post(f"{service.url}{path}", json=body, timeout=timeout)


def metric(service, name, **labels):
    return sample(httpx.get(f"{service.url}/metrics", timeout=10).text, name, **labels)


def same(shown, answered, where="answer"):
    """Equal, floats to within 0.002 (a text's reward scored in another batch can move in the 4th decimal)."""
    if isinstance(shown, float) or isinstance(answered, float):
        assert answered == pytest.approx(shown, abs=2e-3), where
    elif isinstance(shown, dict):
        assert set(shown) == set(answered), where
        for key in shown:
            same(shown[key], answered[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert len(shown) == len(answered), where
        for i, (a, b) in enumerate(zip(shown, answered)):
            same(a, b, f"{where}[{i}]")
    else:
        assert shown == answered, where


def test_the_readme_shows_what_the_embedded_default_answers(service):
    from loadtests.readme_example import ask, readme_answer

    shown = readme_answer((ROOT / "README.md").read_text())
    assert shown["reranking"]["candidates"], "the README shows the candidates"
    same(shown, ask(service.url))


def test_completion_is_reranked(service):
    r = post(service, "/v1/completions", {"model": MODEL, "prompt": "Write one sentence about rain.",
                                          "best_of": 3, "max_tokens": 16, "seed": 7, "return_candidates": True})
    assert r.status_code == 200, r.text
    body = r.json()
    rr = body["reranking"]
    assert body["choices"][0]["text"].strip()
    assert rr["candidates_generated"] == 3 and rr["reward_model"] == "style"
    best = max(c["score"] for c in rr["candidates"])
    assert rr["scores"] == [best]
    assert body["usage"]["completion_tokens"] >= sum(c["completion_tokens"] for c in rr["candidates"])
    assert 0 < body["usage"]["completion_tokens"] <= 3 * 16
    assert body["usage"]["prompt_tokens"] > 0


def test_same_seed_same_answer(service):
    body = {"model": MODEL, "prompt": "Name a colour.", "best_of": 2, "max_tokens": 8, "seed": 3, "temperature": 0.8}
    first, second = post(service, "/v1/completions", body).json(), post(service, "/v1/completions", body).json()
    assert first["choices"][0]["text"] == second["choices"][0]["text"]


def test_a_strong_frequency_penalty_changes_a_seeded_answer_and_bad_words_are_never_sampled(service):
    body = {"model": MODEL, "prompt": "List the days of the week, the days of the week, the days:",
            "best_of": 1, "seed": 11, "max_tokens": 24, "temperature": 0.7}
    plain = post(service, "/v1/completions", body).json()["choices"][0]["text"]
    penalised = post(service, "/v1/completions", body | {"frequency_penalty": 2.0}).json()["choices"][0]["text"]
    assert penalised != plain
    assert post(service, "/v1/completions", body).json()["choices"][0]["text"] == plain  # the seed holds
    words = [w.strip(",.:;!?") for w in plain.split()]
    # The first word and one from mid-sentence: vLLM's own bad_words leaves most words' after-a-space
    # form unbanned (see service.generator.vllm.ban_sequences), so the second is the one that tells.
    banned = [words[0], next(w for w in words[1:] if w.isalpha() and len(w) > 3 and w != words[0])]
    without = post(service, "/v1/completions", body | {"bad_words": banned}).json()["choices"][0]["text"]
    assert not set(banned) & {w.strip(",.:;!?") for w in without.split()}, (banned, without)


def test_json_outputs_parse_and_follow_the_schema(service):
    sdk = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", timeout=120)
    chat = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Describe a cat as a JSON object."}], max_tokens=48,
        seed=3, response_format={"type": "json_object"}, extra_body={"best_of": 2})
    assert isinstance(json.loads(chat.choices[0].message.content), dict)
    schema = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 20},
                                               "year": {"type": "integer"}}, "required": ["title", "year"]}
    chat = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a film and its year."}], max_tokens=48, seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": schema}},
        extra_body={"best_of": 2})
    film = json.loads(chat.choices[0].message.content)
    assert isinstance(film["title"], str) and isinstance(film["year"], int)
    bad = {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nonsense"}}}
    with pytest.raises(openai.BadRequestError) as refused:  # a schema the grammar cannot compile
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], response_format=bad)
    assert refused.value.body["param"] == "response_format"


def test_logprobs_of_the_chosen_answer_come_from_the_engine_one_per_token(service):
    body = {"model": MODEL, "prompt": "Write one sentence about rain.", "best_of": 2, "seed": 5, "max_tokens": 16,
            "logprobs": 2}
    choice = post(service, "/v1/completions", body).json()["choices"][0]
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] and "".join(logprobs["tokens"]) == choice["text"]
    assert len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == len(logprobs["tokens"])
    assert all(lp <= 0 for lp in logprobs["token_logprobs"]) and all(len(t) == 2 for t in logprobs["top_logprobs"])


def test_a_prompt_of_token_ids_answers_as_its_text_does(service):
    from transformers import AutoTokenizer

    from service.embedded import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("embedded:smollm2-135m-instruct"))
    text = "Name a colour."
    body = {"model": MODEL, "best_of": 2, "max_tokens": 8, "seed": 3, "temperature": 0.8}
    by_text = post(service, "/v1/completions", body | {"prompt": text}).json()
    by_ids = post(service, "/v1/completions", body | {"prompt": tokenizer.encode(text)}).json()
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert by_ids["usage"] == by_text["usage"]
    assert by_ids["reranking"]["scores"] == by_text["reranking"]["scores"]  # the reward read the same prompt text
    bad = post(service, "/v1/completions", body | {"prompt": [1, 10**7]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_a_best_of_8_chat_stream_commits_to_a_leader_and_streams_its_tokens(service):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Describe a harbour at dawn."}], "stream": True,
            "best_of": 8, "max_tokens": 48, "seed": 11, "stream_commit": {"policy": "leader", "at_tokens": 8}}
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=120) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: {")]
    events = [json.loads(line[6:]) for line in lines]
    pieces = [e["choices"][0]["delta"].get("content") for e in events if e["choices"][0]["finish_reason"] is None]
    rr = events[-1]["reranking"]
    assert rr["commit"]["at_tokens"] == 8 and rr["commit"]["candidates_alive"] == 8
    assert len([p for p in pieces if p]) > 10  # the leader's tokens as the engine made them
    assert rr["candidates_pruned"] == 7  # every other candidate aborted at the commit
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_no_empty_winner_on_a_tight_budget_for_a_long_story(service):
    # Once answered with "" (a candidate that "finished" empty) while seven others had text.
    body = {"model": MODEL, "prompt": "Tell a long story about a ship.", "max_tokens": 400, "best_of": 8,
            "seed": 5, "return_candidates": True}
    checked = 0
    for budget_ms in (800, 5000):  # 5 s: an idle engine always has text by then
        r = post(service, "/v1/completions", body | {"latency_budget_ms": budget_ms})
        if r.status_code != 200:  # refused or nothing by the deadline on a slow machine: not a wrong answer
            assert r.status_code in (503, 504), r.text
            continue
        answer = r.json()
        texts = [c["text"] for c in answer["reranking"]["candidates"]]
        if any(t.strip() for t in texts):
            assert answer["choices"][0]["text"].strip(), (budget_ms, texts)
            checked += 1
    assert checked, "neither budget gave an answer with text among its candidates: nothing was checked"


def test_chat_uses_the_chat_template(service):
    from transformers import AutoTokenizer

    from service.embedded import resolve_model_path

    messages = [{"role": "user", "content": "Say hello."}]
    r = post(service, "/v1/chat/completions", {"model": MODEL, "max_tokens": 12, "best_of": 2, "messages": messages})
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"].strip()
    # The engine saw the templated conversation (system turn, role markers), not the bare text.
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("embedded:smollm2-135m-instruct"))
    templated = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = len(tokenizer.encode(templated, add_special_tokens=False))
    assert r.json()["usage"]["prompt_tokens"] == expected > len(tokenizer.encode("Say hello.")) + 4


def test_streaming(service):
    r = post(service, "/v1/completions", {"model": MODEL, "prompt": "Count: one, two,", "max_tokens": 8,
                                          "best_of": 2, "stream": True})
    lines = [line for line in r.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["text"] for e in events if e["choices"]).strip()
    assert events[-1]["reranking"]["candidates_generated"] == 2


def test_budget_holds_and_aborts_unfinished_candidates(service):
    budget_ms = 2500
    cutoffs, aborted = metric(service, "prune_budget_cutoffs_total"), metric(service, "prune_candidates_aborted_total")
    started = time.monotonic()
    r = post(service, "/v1/completions", {"model": MODEL, "best_of": 4, "max_tokens": 400, "seed": 11,
                                          "prompt": "Write a long, detailed essay on the history of lighthouses.",
                                          "latency_budget_ms": budget_ms, "return_candidates": True})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    rr = r.json()["reranking"]
    assert rr["stopped_early"] is True
    # Either the cut candidates were left out (some finished) or the best partial one was returned.
    assert rr["candidates_scored"] < 4 or r.json()["choices"][0]["finish_reason"] == "length"
    assert elapsed < budget_ms / 1000 + 1.5
    assert metric(service, "prune_budget_cutoffs_total") == cutoffs + 1
    assert metric(service, "prune_candidates_aborted_total") >= aborted + 1
    # The engine really stopped: a short request right after is not stuck behind 4 x 400 tokens.
    started = time.monotonic()
    quick = post(service, "/v1/completions", {"model": MODEL, "prompt": "Hi", "best_of": 1, "max_tokens": 4})
    assert quick.status_code == 200 and time.monotonic() - started < 10


def test_early_pruning_aborts_weak_starts_in_the_engine(service):
    body = {"model": MODEL, "best_of": 4, "max_tokens": 48, "seed": 5,
            "prompt": "Explain in a few sentences why the sky is blue.",
            "pruning": {"checkpoints": [6], "fraction": 0.5}, "return_candidates": True}
    pruned_before = metric(service, "prune_candidates_pruned_total")
    r = post(service, "/v1/completions", body)
    assert r.status_code == 200, r.text
    rr, usage = r.json()["reranking"], r.json()["usage"]
    assert rr["candidates_generated"] == 4 and rr["candidates_pruned"] >= 1
    assert metric(service, "prune_candidates_pruned_total") == pruned_before + rr["candidates_pruned"]
    assert rr["candidates_scored"] == 4 - rr["candidates_pruned"]
    # The pruned ones stopped near the checkpoint: the request cost less than 4 full candidates.
    assert usage["completion_tokens"] < 4 * 48


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"prompt": "word " * 3000}, 400, "prompt"),
        ({"prompt": "Hi", "max_tokens": 5000}, 400, "max_tokens"),
        ({"prompt": "Hi", "best_of": 0}, 400, "best_of"),
        ({"prompt": "Hi", "model": "gpt-4o"}, 404, "model"),
    ],
)
def test_bad_requests_are_named_and_the_service_keeps_serving(service, body, status, param):
    r = post(service, "/v1/completions", {"model": MODEL, **body})
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200


def test_stock_openai_client(service):
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="none", max_retries=0)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert chat.choices[0].message.content
    assert [m.id for m in client.models.list()] == [MODEL]


def test_reward_models_and_the_scoring_endpoint(service):
    listed = httpx.get(f"{service.url}/v1/reward_models", timeout=10).json()["data"]
    assert {m["id"]: (m["kind"], m["default"]) for m in listed} == {
        "slop": ("slop", False), "style-head": ("embedding-head", False), "style-human": ("embedding-head", False),
        "style": ("ensemble", True)}
    r = post(service, "/v1/rewards", {"prompt": "How do I keep bread fresh?", "completions": [
        "Great question! It's worth noting that, generally speaking, there are many factors to consider. I hope this helps!",
        "Keep it in a paper bag for two days, then slice and freeze it.",
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reward_model"] == "style" and set(body["components"]) == {"slop", "style-head", "style-human"}
    assert body["scores"][1] > body["scores"][0]


def test_metrics_move_with_a_request(service):
    names = {
        "ok": ("prune_requests_total", {"endpoint": "/v1/completions", "status": "200"}),
        "generated": ("prune_candidates_generated_total", {}),
        "scored": ("prune_candidates_scored_total", {}),
        "chosen": ("prune_chosen_reward_count", {"reward_model": "style"}),
        "queue_wait": ("prune_queue_wait_seconds_count", {}),  # vLLM reported when each candidate was scheduled
        "tokens": ("prune_completion_tokens_total", {}),
    }
    before = {key: metric(service, name, **labels) for key, (name, labels) in names.items()}
    r = post(service, "/v1/completions", {"model": MODEL, "prompt": "Name a fruit.", "best_of": 2, "max_tokens": 8,
                                          "seed": 1, "temperature": 0.8})
    assert r.status_code == 200, r.text
    delta = {key: metric(service, name, **labels) - before[key] for key, (name, labels) in names.items()}
    tokens = r.json()["usage"]["completion_tokens"]
    assert delta == {"ok": 1, "generated": 2, "scored": r.json()["reranking"]["candidates_scored"], "chosen": 1,
                     "queue_wait": 2, "tokens": tokens}
