"""The arithmetic of pruning's calibration and benchmark (loadtests/calibrate_pruning,
loadtests/bench_compute), on hand-made records."""

import pytest

from loadtests.bench_compute import bootstrap, summarise
from loadtests.calibrate_pruning import KS, confidence_rule, fraction_rule, noise, replay


def record(final, partial_of, tokens=None, cut_after=64):
    """Candidates with these final rewards; partial_of(i, k) their reward at k tokens;
    every candidate `cut_after` tokens long unless `tokens` says otherwise."""
    tokens = tokens or [cut_after] * len(final)
    return {"tokens": tokens, "final": final,
            "partial": {k: [partial_of(i, k) for i in range(len(final))] for k in KS},
            "cut": {k: [t > k for t in tokens] for k in KS}}


def test_noise_is_the_residual_of_final_on_prefix_in_prefix_units():
    # final = 2 x prefix within each prompt (plus what the prompt shares): slope 2, no residual.
    records = [record([2.0 * x + 5 for x in (0, 1, 3)], lambda i, k: (0, 1, 3)[i]),
               record([2.0 * x - 1 for x in (2, 0, 1)], lambda i, k: (2, 0, 1)[i])]
    rows = {row["k"]: row for row in noise(records)}
    assert rows[8]["slope"] == pytest.approx(2.0) and rows[8]["residual"] == pytest.approx(0.0)
    assert rows[8]["rank_corr"] == pytest.approx(1.0)


def test_replay_counts_the_tokens_a_schedule_spends_and_the_answer_it_keeps():
    # Four 64-token candidates whose rewards at every length are their final ones.
    finals = [0.0, 3.0, 1.0, 2.0]
    r = record(finals, lambda i, k: finals[i])
    # The fraction rule at 8 then 24 tokens: two go at 8, one at 24, the best (1) finishes.
    spent, final = replay(r, 4, [8, 24], fraction_rule(0.5))
    assert (spent, final) == (8 + 8 + 24 + 64, 3.0)
    # The confidence rule with noise 1.5 at 8 tokens: within 1.5 of 3 only 3 and 2 stay; then 2 goes at 24 (noise 0.5).
    spent, final = replay(r, 4, [8, 24], confidence_rule(1.0, {8: 1.5, 24: 0.5}))
    assert (spent, final) == (8 + 8 + 24 + 64, 3.0)
    # Adaptive N: a first wave of 2 (rewards 0 and 3, spread 1.5) draws the other two unless grow_at forbids.
    # Drawn, they are judged against the first wave's best: 1.0 goes at 8 tokens, 2.0 at 24.
    rule = confidence_rule(1.0, {8: 1.0, 24: 0.5})
    assert replay(r, 4, [8, 24], rule, first_wave=2, grow_at=1.0, noise_of={8: 1.0}) == (8 + 64 + 8 + 24, 3.0)
    assert replay(r, 4, [8, 24], rule, first_wave=2, grow_at=2.0, noise_of={8: 1.0}) == (8 + 64, 3.0)


def requests(rewards, tokens, seconds=1.0):
    return [{"prompt": p, "seconds": seconds, "reward": r, "tokens": t, "finished": True, "started": 1, "pruned": 0}
            for p, (r, t) in enumerate(zip(rewards, tokens))]


def test_gain_kept_is_a_ratio_of_mean_gains_over_best_of_1_with_its_interval():
    cells = {
        ("off", 1): requests([0.0, 1.0, 2.0], [50, 50, 50], seconds=1.0),
        ("off", 8): requests([2.0, 2.0, 4.0], [400, 400, 400], seconds=3.0),  # gains 2, 1, 2: mean 5/3
        ("today", 8): requests([1.0, 2.0, 3.0], [200, 100, 300], seconds=2.0),  # gains 1, 1, 1: mean 1
    }
    rows = {(r["schedule"], r["best_of"]): r for r in summarise(cells)}
    today = rows[("today", 8)]
    assert today["gain_kept"] == pytest.approx(0.6, abs=1e-3) and today["token_share"] == pytest.approx(0.5)
    assert today["gain_kept_low"] <= 0.6 <= today["gain_kept_high"]
    assert today["p50_vs_best_of_1"] == 2.0 and rows[("off", 8)]["gain"] == pytest.approx(5 / 3, abs=1e-3)


def test_a_504_leaves_its_prompt_out_of_the_gains():
    cells = {("off", 1): requests([0.0, 0.0], [50, 50]), ("off", 8): requests([1.0, 5.0], [400, 400]),
             ("today", 8): requests([1.0, None], [200, 0])}
    today = next(r for r in summarise(cells) if r["schedule"] == "today")
    assert today["prompts"] == 1 and today["gain_kept"] == 1.0 and today["status_504"] == 1


def test_the_bootstrap_interval_of_a_constant_is_that_constant():
    assert bootstrap(5, lambda idx: 0.7) == (0.7, 0.7)


def test_branching_and_fresh_schedules_spend_the_same_tokens_and_keep_their_best():
    from loadtests.measure_branching import schedules

    # 8 candidates of 64 tokens, all past k = 16; the prefix order is 0 (best) to 7.
    record = {"tokens": [64] * 8, "cut": [True] * 8, "prefix": [8.0, 7, 6, 5, 4, 3, 2, 1],
              "final": [1.0, 2.0, 0.0, 0.0, 0.0, 5.0, 9.0, 0.0], "leaders": [0, 1],
              "branches": [{"leader": 0, "tokens": 48, "final": 4.0}, {"leader": 0, "tokens": 48, "final": 0.0},
                           {"leader": 1, "tokens": 48, "final": 3.0}, {"leader": 1, "tokens": 48, "final": 0.0}]}
    s = schedules(record, 16)
    assert s["best_of_8"] == (8.0, 512)  # candidate 6 (9.0) over candidate 0 (1.0)
    assert s["fresh"] == (4.0, 6 * 64 + 2 * 16)  # the 6 best prefixes finished: 5.0 is the best of them
    assert s["branch"] == (3.0, 2 * 64 + 6 * 16 + 4 * 48)  # leaders 1.0, 2.0 and branches up to 4.0
    assert s["fresh"][1] == s["branch"][1]  # the same tokens
