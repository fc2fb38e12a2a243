"""The arithmetic of the commit-point calibration (loadtests/calibrate_commit), on hand-made scores."""

import pytest

from loadtests.calibrate_commit import Record, best, summarise, top


def record(leader, winner, final, final_abs, offsets=(), top2=None, best_of=4, k=8):
    return Record(prompt=0, best_of=best_of, k=k, leader=leader, winner=winner, top2=top2 or [leader], partial=[],
                  final=final, final_abs=final_abs, offsets=list(offsets), offsets_abs=[2 * o for o in offsets],
                  cut=len(offsets))


def test_best_and_top_break_ties_towards_the_earlier_candidate():
    assert best([1.0, 3.0, 3.0, 2.0]) == 1
    assert top([1.0, 3.0, 3.0, 2.0], 2) == [1, 2]


def test_summary_counts_hits_regret_in_gain_units_and_offsets():
    records = [
        # The leader is the winner: no regret; gain 2 (winner 3 over candidate 0's 1).
        record(1, 1, [1.0, 3.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], offsets=[-1.0, -0.5]),
        # The leader (2) is not the winner (1): regret 1 of a gain of 2; the winner is in its top 2.
        record(2, 1, [1.0, 3.0, 2.0, 0.0], [1.0, 3.0, 2.0, 0.0], offsets=[0.5], top2=[2, 1]),
    ]
    s = summarise(records)
    assert s["hit_rate"] == 0.5 and s["top2_rate"] == 1.0
    assert s["regret_in_gain_units"] == pytest.approx(0.25) and s["gain_kept"] == pytest.approx(0.75)
    # Absolute: committed (2 + 2) / 2 = 2, buffered (2 + 3) / 2 = 2.5, first (0 + 1) / 2 = 0.5.
    assert s["committed_final_reward_abs"] == 2.0 and s["buffered_final_reward_abs"] == 2.5
    assert s["gain_kept_abs"] == pytest.approx(0.75)
    assert s["partial_offset_default"] == pytest.approx(-1.0 / 3) and s["partial_offset_abs"] == pytest.approx(-2.0 / 3)
    assert s["cut_share"] == pytest.approx(3 / 8)


def test_a_margin_policy_commits_early_only_when_the_leader_leads_clearly():
    from loadtests.calibrate_commit import margin_policy

    final = [0.0, 2.0, 1.0]  # candidate 1 is the winner, a gain of 2 over candidate 0
    def at(prompt, k, partial):
        return Record(prompt=prompt, best_of=3, k=k, leader=best(partial), winner=1, top2=top(partial, 2),
                      partial=partial, final=final, final_abs=final, offsets=[], offsets_abs=[], cut=3)
    records = [
        at(0, 8, [0.0, 3.0, 0.5]), at(0, 32, [0.0, 3.0, 0.0]),  # a clear lead at 8: commits there, rightly
        at(1, 8, [0.0, 1.0, 1.2]), at(1, 32, [0.0, 2.0, 1.0]),  # close at 8: waits for 32, where 1 leads
    ]
    p = margin_policy(records, [8, 32], margin=1.0)
    assert p["mean_k"] == 20 and p["hit_rate"] == 1.0 and p["gain_kept"] == 1.0
    eager = margin_policy(records, [8, 32], margin=0.1)  # commits at 8 both times: the second one to candidate 2
    assert eager["mean_k"] == 8 and eager["hit_rate"] == 0.5 and eager["gain_kept"] == 0.75
