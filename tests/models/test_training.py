"""Training reward heads on the real embedded MiniLM: the commands a user runs write heads
that prefer what their pairs or their experts prefer, the same each time."""

import asyncio
import json
import random

from service.config import EmbeddingHeadRewardConfig
from service.reward.embedding_head import EmbeddingHeadReward, load_head
from service.reward.style_features import NAMES
from service.reward.train import main
from service.types import Prompt
from tests.lamp_clone import STEMS, paragraph


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


def scores_of(head_path, texts):
    model = EmbeddingHeadReward(EmbeddingHeadRewardConfig(head=str(head_path), device="cpu"))
    return asyncio.run(model.score(Prompt(text=""), texts)).values


def own_pairs(path):
    """A few chat pairs of the project's kind, trained beside the paragraphs."""
    rows = [{"prompt": f"How do I store {thing}?", "chosen": f"Keep {thing} dry and cool; check it every {n} days.",
             "rejected": f"Great question! Storing {thing} generally depends on many factors. I hope this helps!"}
            for n, thing in enumerate(["bread", "tea", "rice", "flour", "coffee", "honey", "oats", "nuts", "jam",
                                       "salt", "beans", "pasta"], start=2)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_training_is_reproducible_and_learns_the_experts_preference(lamp_clone, tmp_path, capsys):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    pairs = own_pairs(tmp_path / "own.jsonl")
    for out in (first, second):
        assert main(["--lamp", str(lamp_clone), "--pairs", str(pairs), "--out", str(out), "--no-ensemble",
                     "--epochs", "100"]) == 0
    printed = capsys.readouterr().out
    assert "validation" in printed and "Spearman" in printed
    _, meta = load_head(first)
    assert meta["inputs"] == ["completion", "style", "ngrams"] and len(meta["style_mean"]) == len(NAMES)
    assert meta["heldout_accuracy"] >= 0.9 and meta["pairs_heldout"] > 0 and meta["pairs_own"] > 0
    assert meta["heldout_spearman"] >= 0.5
    # Same data, same seed: the same scores to the last digit.
    rng = random.Random(1)
    topic = [f"qq{stem}" for stem in STEMS]
    texts = [paragraph(rng, topic, True), paragraph(rng, topic, False)]
    assert scores_of(first, texts) == scores_of(second, texts)
    padded, plain = scores_of(first, texts)
    assert plain > padded
