"""Reading expert judgements (LAMP's layout) from a small synthetic clone (tests/lamp_clone.py),
and the parts of training that need no encoder (training itself: tests/models)."""

import random

import pytest

from service.reward import lamp
from service.reward.embedding_head import HeadInputs
from service.reward.style_features import NAMES, features
from service.reward.train import main


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
