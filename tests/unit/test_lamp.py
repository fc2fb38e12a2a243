"""Training on expert judgements (LAMP's layout), from a small synthetic clone made here.

No text of the real dataset is in the suite: the fixture writes paragraphs of its own
in the same file layout, where the "expert" prefers the plain edit to the padded draft.
"""

import asyncio
import json
import random

import pytest

from service.config import EmbeddingHeadRewardConfig
from service.reward import lamp
from service.reward.embedding_head import EmbeddingHeadReward, HeadInputs, load_head
from service.reward.style_features import NAMES, features
from service.reward.train import main
from service.types import Prompt

COMMON = "the and was of to in".split()
STEMS = ("oak pier lamp coat fern rail jar mule kiln reed moth gate silt barn hull wick plum dusk tarn loam sail "
         "rope tide gull keel mast buoy cove reef wharf").split()
PADDING = ["a sense of", "the weight of", "palpable", "as if", "in that moment", "a testament to", "unspoken"]


def paragraph(rng: random.Random, topic: list[str], padded: bool) -> str:
    sentences = []
    for i in range(6):
        words = rng.sample(topic, 8) + rng.sample(COMMON, 2)
        rng.shuffle(words)
        if padded:
            words = [PADDING[(i + len(sentences)) % len(PADDING)], *words, "somehow", PADDING[i % len(PADDING)]]
        else:
            words = [*words, str(rng.randint(2, 90))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def chat_record(text: str, score: int) -> str:
    user = f"You are given a paragraph.\n\nParagraph:\n{text}\n\nYou must produce your answer in JSON."
    return json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": user},
                                    {"role": "assistant", "content": json.dumps({"score": score})}]})


@pytest.fixture(scope="module")
def lamp_clone(tmp_path_factory):
    """A directory shaped like salesforce/creativity_eval, with 60 source groups."""
    root = tmp_path_factory.mktemp("creativity_eval")
    rng = random.Random(7)
    lines = []
    for g in range(60):
        topic = [f"{chr(97 + g % 26)}{chr(97 + g // 26)}{stem}" for stem in STEMS]
        lines.append(chat_record(paragraph(rng, topic, padded=True), rng.choice([2, 3, 4])))
        lines.append(chat_record(paragraph(rng, topic, padded=False), rng.choice([6, 7, 8])))
    ratings = root / lamp.RATINGS
    ratings.parent.mkdir(parents=True)
    ratings.write_text("\n".join(lines) + "\n")
    # Files the reader must never open: unreadable as JSON, so opening one would fail.
    for held_out in ("WritingRewards/WQ-benchmark-data/wq_benchmark.json",
                     "WritingRewards/training/Llama/data/lamp-R/test_dataset.json"):
        (root / held_out).parent.mkdir(parents=True, exist_ok=True)
        (root / held_out).write_text("not json")
    reannotation = root / lamp.REANNOTATION
    reannotation.mkdir(parents=True)
    topic = [f"zz{stem}" for stem in STEMS]
    reannotation.joinpath("W1_edits.json").write_text(json.dumps(
        [{"instruction": "Write", "preedit": paragraph(rng, topic, True), "postedit": paragraph(rng, topic, False)}]))
    batch = root / lamp.RANKINGS / "batch1"
    batch.mkdir(parents=True)
    versions = [paragraph(rng, topic, True), paragraph(rng, topic, False), paragraph(rng, topic, True) + " More."]
    batch.joinpath("w.json").write_text(json.dumps(
        [{"instruction_id": 1, "instruction": "Write", "responses": versions, "mapping": {}}]))
    batch.joinpath("w_rankings.json").write_text(json.dumps(
        [{"instruction_id": 1, "rank_1": "Response 2", "rank_2": "Response 1", "rank_3": "Response 3"}]))
    return root


def test_paragraphs_are_grouped_by_source_and_split_whole(lamp_clone):
    rated = lamp.read_ratings(lamp_clone)
    assert len(rated) == 120 and len({r.group for r in rated}) == 60
    pairs = lamp.rated_pairs(rated)
    assert len(pairs) == 60 and all("somehow" in p.rejected and "somehow" not in p.chosen for p in pairs)
    validation = {r.group for r in rated if lamp.is_validation(r.group)}
    assert 0 < len(validation) < 60
    # A draft and its edit always fall on the same side.
    group = {r.text: r.group for r in rated}
    assert all(group[p.chosen] == group[p.rejected] for p in pairs)


def test_rankings_and_reannotation_become_pairs(lamp_clone):
    edits = lamp.read_reannotation(lamp_clone)
    assert len(edits) == 1 and "somehow" in edits[0].rejected
    ranked = lamp.read_rankings(lamp_clone)
    assert len(ranked) == 3  # 1 > 2, 1 > 3, 2 > 3 of one ranking
    assert "somehow" not in ranked[0].chosen and ranked[2].rejected.endswith("More.")


def test_a_path_that_is_not_a_clone_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(lamp.LampError, match="not found"):
        lamp.read_ratings(tmp_path)
    assert main(["--lamp", str(tmp_path), "--out", str(tmp_path / "h.safetensors")]) == 2
    assert "creativity_eval" in capsys.readouterr().err


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


def test_style_features_are_rates_not_lengths():
    text = "The pier was quiet. A sense of dread hung in the air as if the sea knew. She counted 14 boats."
    once, twice = features(text), features(text + " " + text)
    # Every feature but the variety of the first 100 words is a rate: doubling the text keeps it.
    for name, a, b in zip(NAMES, once, twice):
        if name != "type_token_ratio":
            assert a == pytest.approx(b, abs=0.02), name
    assert features("") == [0.0] * len(NAMES)


def test_old_head_files_read_the_legacy_inputs_and_unknown_inputs_are_refused_at_load():
    assert HeadInputs.from_meta({"in_dim": 768}).blocks == ("completion", "prompt_product")
    with pytest.raises(ValueError, match="does not know: syntax"):
        HeadInputs.from_meta({"in_dim": 768, "inputs": ["completion", "syntax"]})


def test_out_of_fold_scores_never_come_from_a_head_that_saw_the_pair():
    import torch

    from service.reward.train_lamp import FOLDS, fit_head, out_of_fold

    # Each pair has texts of its own (one-hot rows): a head can learn a pair only by seeing it.
    n = 40
    x = torch.eye(2 * n)
    chosen, rejected = list(range(n)), list(range(n, 2 * n))
    head = fit_head(x, chosen, rejected, epochs=100)
    with torch.inference_mode():
        seen = head(x).squeeze(-1)
    assert all(seen[c] - seen[r] > 0.5 for c, r in zip(chosen, rejected))  # memorised in sample
    folds = [i % FOLDS for i in range(n)]
    scores = out_of_fold(x, chosen, rejected, folds, epochs=100)
    # Out of fold a pair's rows keep their initial weights: margins of chance, not learned ones.
    assert all(abs(c - r) < 0.3 for c, r in scores)


def test_ensemble_weights_follow_the_member_that_predicts_the_judgements():
    from service.reward.train_lamp import _fit_weights

    rng = random.Random(3)
    # Member 0 agrees with the judges 90% of the time, member 1 is noise; two sets of unequal size.
    diffs = [[(1 if rng.random() < 0.9 else -1) * rng.uniform(0.5, 1.5), rng.gauss(0, 1)] for _ in range(300)]
    weights = _fit_weights(diffs, [0] * 250 + [1] * 50)
    assert weights[0] > 1.0 and abs(weights[1]) < 0.3 * weights[0]
