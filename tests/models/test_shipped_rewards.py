"""The shipped reward models on the real embedded MiniLM: the heads meet their bars on
pairs held out of training, and heads on one encoder share it."""

import asyncio

import pytest

from service.config import EmbeddingHeadRewardConfig
from service.reward.embedding_head import EmbeddingHeadReward, load_head, resolve_head_path
from service.reward.pairs import HARD_PAIRS, HOLDOUT, SHIPPED_PAIRS, is_held_out, read_pairs
from service.types import Prompt


def test_the_shipped_pairs_and_head_meet_the_bar():
    pairs = read_pairs(SHIPPED_PAIRS)
    assert len(pairs) >= 300
    longer_chosen = sum(len(p.chosen) > len(p.rejected) for p in pairs)
    assert longer_chosen >= 0.15 * len(pairs), "length alone must not predict the winner"
    _, meta = load_head(resolve_head_path("shipped:style-head"))
    assert meta["heldout_accuracy"] >= 0.85

    # Recompute held-out accuracy with the shipped head as the service would load it.
    held_out = [p for p in pairs if is_held_out(p.prompt, HOLDOUT)]
    model = EmbeddingHeadReward(EmbeddingHeadRewardConfig())
    scores = asyncio.run(model.score_many([(Prompt(text=p.prompt), [p.chosen, p.rejected]) for p in held_out]))
    wins = sum(chosen > rejected for chosen, rejected in (s.values for s in scores))
    assert wins / len(held_out) >= 0.85


def test_the_default_style_reward_holds_on_held_out_hard_pairs():
    from loadtests.eval_rewards import evaluate, read_rows
    from service.config import default_reward_models
    from service.reward import make_reward_models

    rows = [r for r in read_rows(HARD_PAIRS) if is_held_out(r["prompt"], HOLDOUT)]
    style = make_reward_models(default_reward_models())["style"]
    results = asyncio.run(evaluate({"style": style}, rows))
    by_kind = {kind: sum(oks) / len(oks) for kind, oks in results["style"].items()}
    overall = sum(sum(oks) for oks in results["style"].values()) / len(rows)
    fewer_chars = sum(sum(oks) for oks in results["fewer characters wins"].values()) / len(rows)
    print(f"held-out hard pairs: style {overall:.0%}, by kind {by_kind}, fewer characters wins {fewer_chars:.0%}")
    assert overall >= 0.9 and min(by_kind.values()) >= 0.75  # ties count as wrong
    assert fewer_chars <= 0.65


def test_heads_on_one_encoder_share_it_and_embed_each_text_once(monkeypatch):
    from service.config import EnsembleMember, EnsembleRewardConfig
    from service.reward import make_reward_models
    from service.reward.encoder import EncoderPool

    models = make_reward_models({
        "style-head": EmbeddingHeadRewardConfig(device="cpu"),
        "style-human": EmbeddingHeadRewardConfig(head="shipped:style-human", device="cpu"),
        "both": EnsembleRewardConfig(members=[EnsembleMember(name="style-head", mean=0.0, std=1.0),
                                              EnsembleMember(name="style-human", mean=0.0, std=1.0)]),
    })
    texts = ["Keep it in a paper bag for two days.", "Great question! It depends on many factors."]
    asyncio.run(models["style-head"].start())
    encoder = models["style-head"].encoder
    embedded = []
    real_encode = encoder._encode
    monkeypatch.setattr(encoder, "recent", type(encoder.recent)())  # the process's encoder: start from no memo
    monkeypatch.setattr(encoder, "_encode", lambda batch, size: embedded.extend(batch) or real_encode(batch, size))
    both = asyncio.run(models["both"].score(Prompt(text="How do I keep bread fresh?"), texts))
    assert models["style-human"].encoder is encoder
    assert sorted(embedded) == sorted(texts + ["How do I keep bread fresh?"])  # once each, for two heads
    # Shared rows give the same scores as each head alone on an encoder of its own.
    alone = EmbeddingHeadReward(EmbeddingHeadRewardConfig(head="shipped:style-human", device="cpu"), EncoderPool())
    fresh = asyncio.run(alone.score(Prompt(text="How do I keep bread fresh?"), texts)).values
    assert alone.encoder is not encoder
    assert both.components["style-human"] == pytest.approx(fresh, abs=1e-3)
