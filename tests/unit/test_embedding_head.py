"""The embedding-head reward and its training command."""

import asyncio
import json

import pytest

from service.config import EmbeddingHeadRewardConfig
from service.reward.embedding_head import EmbeddingHeadReward, load_head, resolve_head_path
from service.reward.pairs import HARD_PAIRS, HOLDOUT, SHIPPED_PAIRS, PairsError, is_held_out, read_pairs
from service.reward.train import main
from service.types import Prompt


def write_pairs(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def toy_pairs(n=40):
    topics = ["bread", "bikes", "tea", "rain", "maps", "paint", "clocks", "boats", "ink", "soap"]
    rows = []
    for i in range(n):
        t = topics[i % len(topics)]
        rows.append({
            "prompt": f"Tell me about {t} #{i}",
            "chosen": f"{t.capitalize()} lasts longer if you keep it dry; I check mine every {i % 7 + 2} days.",
            "rejected": f"Great question! When it comes to {t}, it's worth noting that it truly depends. I hope this helps!",
        })
    return rows


def test_training_writes_a_head_that_prefers_chosen(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", toy_pairs())
    out = tmp_path / "head.safetensors"
    assert main(["--pairs", str(pairs), "--out", str(out), "--epochs", "150"]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed
    _, meta = load_head(out)
    assert meta["heldout_accuracy"] >= 0.9 and meta["pairs_heldout"] > 0

    model = EmbeddingHeadReward(EmbeddingHeadRewardConfig(head=str(out)))
    scores = asyncio.run(model.score(Prompt(text="Tell me about glue"), [
        "Great question! When it comes to glue, it's worth noting that it truly depends. I hope this helps!",
        "Glue lasts longer if you keep it dry; I check mine every 3 days.",
    ]))
    assert scores.values[1] > scores.values[0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "0 pairs"),
        ('{"prompt": "p", "chosen": "a"}\n', ":1: 'rejected' must be a non-empty string"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b"}\nnot json\n', ":2: not JSON"),
        ('["a", "b"]\n', ":1: expected an object"),
        ('{"prompt": "p", "chosen": "same", "rejected": "same"}\n', "the same text"),
    ],
)
def test_bad_pair_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PairsError, match=message):
        read_pairs(path)
    assert main(["--pairs", str(path), "--out", str(tmp_path / "h.safetensors")]) == 2


def test_missing_pairs_file(tmp_path):
    assert main(["--pairs", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "h.safetensors")]) == 2


def test_a_head_file_that_is_not_a_head_is_refused(tmp_path):
    from safetensors.torch import save_file
    import torch

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a prune reward head"):
        load_head(path)


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
    wins = 0
    for p in held_out:
        chosen, rejected = asyncio.run(model.score(Prompt(text=p.prompt), [p.chosen, p.rejected])).values
        wins += chosen > rejected
    assert wins / len(held_out) >= 0.85


def test_the_hard_pairs_are_length_matched_and_not_a_length_game():
    for path in HARD_PAIRS:
        pairs = read_pairs(path)
        assert len(pairs) >= 50, path.name
        words = [(len(p.chosen.split()), len(p.rejected.split())) for p in pairs]
        assert all(abs(c - r) <= 0.15 * max(c, r) for c, r in words), path.name
        assert sum(c > r for c, r in words) == len(pairs) // 2, f"{path.name}: the better text longer in half"
    assert sum(len(read_pairs(p)) for p in HARD_PAIRS) >= 300


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
