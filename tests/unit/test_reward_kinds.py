"""The reward family: sequence-classifier, remote, ensemble (embedding-head in test_embedding_head)."""

import asyncio
import threading
import time

import pytest

from service.config import (
    EnsembleMember,
    EnsembleRewardConfig,
    FakeRewardConfig,
    RemoteRewardConfig,
    SequenceClassifierRewardConfig,
    SlopRewardConfig,
)
from service.reward import make_reward_models
from service.reward.ensemble import zscores
from service.reward.remote import RemoteReward, RewardServiceError
from service.reward.sequence_classifier import SequenceClassifierReward
from service.types import Prompt
from tests.tiny_models import tiny_reward_model

PROMPT = Prompt(text="How do I keep bread fresh?")
TEXTS = ["Freeze it sliced.", "Great question! It depends on many factors.", "Paper bag, two days, then the freezer."]


def run(coro):
    return asyncio.run(coro)


# --- sequence-classifier ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"))


def test_sequence_classifier_scores_each_completion_with_its_raw_logit(tiny_classifier):
    model = SequenceClassifierReward(SequenceClassifierRewardConfig(path=tiny_classifier, batch_size=2))
    scores = run(model.score(PROMPT, TEXTS))
    assert len(scores.values) == 3 and len(set(scores.values)) == 3
    assert model.device == "cpu" and str(model.model.dtype) == "torch.float32"
    assert run(model.score(PROMPT, TEXTS)).values == scores.values  # deterministic


def test_sequence_classifier_batching_does_not_change_scores(tiny_classifier):
    model = SequenceClassifierReward(SequenceClassifierRewardConfig(path=tiny_classifier, batch_size=2))
    alone = [run(model.score(PROMPT, [t])).values[0] for t in TEXTS]
    other = Prompt(messages=({"role": "user", "content": "Say hi"},))
    together = run(model.score_many([(PROMPT, TEXTS), (other, ["hi", "hello there friend"])]))
    assert together[0].values == pytest.approx(alone, abs=1e-4)
    assert len(together[1].values) == 2


def test_sequence_classifier_uses_the_chat_template_and_truncates(tiny_classifier):
    model = SequenceClassifierReward(SequenceClassifierRewardConfig(path=tiny_classifier, max_length=32))
    run(model.start())
    im_start = model.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert im_start in model.token_ids(PROMPT, "short")
    assert len(model.token_ids(PROMPT, "word " * 500)) == 32
    assert len(run(model.score(PROMPT, ["word " * 500, "short"])).values) == 2


# --- remote --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reward_server():
    """A real HTTP reward service on loopback speaking vLLM's and OpenRLHF's protocols."""
    import uvicorn
    from fastapi import FastAPI, Request

    app = FastAPI()

    def value(text):
        return float(len(text))

    @app.post("/classify")
    async def classify(request: Request):
        body = await request.json()
        if body.get("model") == "broken":
            return {"data": [{"index": 0}]}
        return {"data": [{"index": i, "label": None, "probs": [value(t)], "num_classes": 1}
                         for i, t in reversed(list(enumerate(body["input"])))]}

    @app.post("/pooling")
    async def pooling(request: Request):
        body = await request.json()
        return {"data": [{"index": i, "data": [[0.0], [value(t)]]} for i, t in enumerate(body["input"])]}

    @app.post("/get_reward")
    async def get_reward(request: Request):
        body = await request.json()
        if body["query"][0].startswith("slow"):
            time.sleep(1.0)
        if body["query"][0].startswith("fail"):
            from fastapi.responses import JSONResponse

            return JSONResponse({"detail": "boom"}, status_code=500)
        return {"rewards": [value(q) for q in body["query"]]}

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.mark.parametrize("protocol", ["vllm-classify", "vllm-pooling", "openrlhf"])
def test_remote_protocols_return_one_score_per_completion_in_order(reward_server, protocol):
    model = RemoteReward(RemoteRewardConfig(url=reward_server, protocol=protocol, model="rm"))
    prompt = Prompt(text="Q: ")
    assert run(model.score(prompt, ["a", "bbb", "cc"])).values == [4.0, 6.0, 5.0]


def test_remote_timeout_is_a_clear_failure_not_a_zero(reward_server):
    model = RemoteReward(RemoteRewardConfig(url=reward_server, protocol="openrlhf", timeout_s=0.2))
    with pytest.raises(RewardServiceError, match="timed out") as info:
        run(model.score(Prompt(text="slow"), ["x"]))
    assert info.value.status == 502


@pytest.mark.parametrize(
    "url, protocol, model_name, prompt, match",
    [
        (None, "openrlhf", None, "fail", "HTTP 500"),
        (None, "vllm-classify", "broken", "x", "unexpected answer|returned 1 scores"),
        ("http://127.0.0.1:9", "openrlhf", None, "x", "unreachable"),
    ],
)
def test_remote_errors_surface(reward_server, url, protocol, model_name, prompt, match, caplog):
    address = url or reward_server
    model = RemoteReward(RemoteRewardConfig(url=address, protocol=protocol, model=model_name))
    with pytest.raises(RewardServiceError, match=match) as info:
        run(model.score(Prompt(text=prompt), ["a", "b"]))
    assert address not in info.value.message  # the client sees the role, the log the address
    if info.value.message.startswith("the reward service"):  # unreachable or failing: the operator needs the address
        assert address in caplog.text


# --- ensemble ----------------------------------------------------------------------


def test_zscores():
    assert zscores([1.0, 2.0, 3.0]) == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    assert zscores([5.0, 5.0]) == [0.0, 0.0] and zscores([7.0]) == [0.0]


def ensemble(weights, scale="request", stats=None):
    stats = stats or {}
    members = [EnsembleMember(name=n, weight=w, **dict(zip(("mean", "std"), stats.get(n, ()))))
               for n, w in weights.items()]
    configs = {
        "fake": FakeRewardConfig(),
        "slop": SlopRewardConfig(),
        "mix": EnsembleRewardConfig(members=members, scale=scale),
    }
    return make_reward_models(configs)["mix"]


def test_a_reference_scaled_ensemble_scores_a_text_alike_in_any_company():
    model = ensemble({"fake": 1.0, "slop": 2.0}, scale="reference", stats={"fake": (40.0, 10.0), "slop": (-1.0, 2.0)})
    batch = run(model.score(PROMPT, TEXTS * 6))  # 18 texts
    pair = run(model.score(PROMPT, TEXTS[:2]))
    alone = [run(model.score(PROMPT, [t])).values[0] for t in TEXTS]
    assert batch.values[:3] == alone == pair.values + [alone[2]]
    raw = batch.components
    assert alone == pytest.approx([(raw["fake"][i] - 40) / 10 + 2 * (raw["slop"][i] + 1) / 2 for i in range(3)],
                                  abs=1e-3)


def test_two_members_that_disagree_on_a_pair_do_not_tie_on_a_reference_scale():
    texts = ["Great question! Bread keeps in a paper bag for two days.", "Freeze it sliced."]
    per_request = run(ensemble({"fake": 1.0, "slop": 1.0}).score(PROMPT, texts))
    assert per_request.components["fake"][0] > per_request.components["fake"][1]  # fake: longer is better
    assert per_request.components["slop"][0] < per_request.components["slop"][1]  # slop: no flattery is better
    assert per_request.values[0] == per_request.values[1]  # z-scores of two are +-1: a tie
    reference = run(ensemble({"fake": 1.0, "slop": 1.0}, "reference", {"fake": (40.0, 20.0), "slop": (-1.0, 2.0)})
                    .score(PROMPT, texts))
    assert reference.values[0] != reference.values[1]


def test_a_reference_scale_not_given_is_measured_once_at_start_on_the_shipped_texts():
    from service.reward.ensemble import reference_batch

    model = ensemble({"fake": 1.0}, scale="reference")
    run(model.start())
    lengths = [len(t) for _, texts in reference_batch() for t in texts]
    mean = sum(lengths) / len(lengths)
    assert model.stats["fake"][0] == pytest.approx(mean, abs=1e-3) and model.stats["fake"][1] > 0
    assert run(model.score(PROMPT, ["x" * 10])).values == [pytest.approx((10 - mean) / model.stats["fake"][1],
                                                                          abs=1e-3)]


def test_ensemble_sums_weighted_zscores_and_reports_raw_components():
    scores = run(ensemble({"fake": 1.0, "slop": 2.0}).score(PROMPT, TEXTS))
    assert scores.components["fake"] == [float(len(t)) for t in TEXTS]  # each member's own score
    zf, zs = zscores(scores.components["fake"]), zscores(scores.components["slop"])
    assert scores.values == pytest.approx([zf[i] + 2 * zs[i] for i in range(3)], abs=1e-3)
    assert sum(scores.values) == pytest.approx(0, abs=1e-3)  # z-scored within the request


def test_ensemble_scores_merged_across_calls_equal_one_call():
    from service.types import concat

    model = ensemble({"fake": 1.0, "slop": 1.0})
    whole = run(model.score(PROMPT, TEXTS))
    parts = [run(model.score(PROMPT, TEXTS[:1])), run(model.score(PROMPT, TEXTS[1:]))]
    assert parts[0].values == [0.0]  # alone, a candidate has nothing to be compared with
    assert concat(parts).values == pytest.approx(whole.values, abs=1e-3)


def test_ensemble_is_not_swamped_by_a_members_scale():
    # The fake reward's scale is characters (tens); slop's is a few points. Weighted
    # equally after z-scoring, slop can still overturn the fake member's favourite.
    scores = run(ensemble({"fake": 1.0, "slop": 1.0}).score(PROMPT, TEXTS))
    fake_only = run(ensemble({"fake": 1.0}).score(PROMPT, TEXTS))
    assert max(range(3), key=lambda i: fake_only.values[i]) == 1  # the longest, sycophantic text
    assert max(range(3), key=lambda i: scores.values[i]) != 1
