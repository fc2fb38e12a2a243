"""Deadline-aware admission, on a fake clock: what it takes on, what it refuses, and when it says to retry."""

import random
from dataclasses import replace

import pytest

from service.admission import Capacity, DecodeSpeed
from service.budget import Budget
from service.config import AdmissionConfig
from service.errors import Overloaded, retry_after
from service.selection import ScoredCandidate, Selection
from service.plan import RerankPlan, Ticket
from service.types import Candidate, Prompt, SamplingSpec

NOW = 1_000.0


def plan(best_of=4, max_tokens=64, budget_ms=10_000, floor=1, arrived=NOW) -> RerankPlan:
    return RerankPlan(
        reward_model="fake", best_of=best_of, candidates=best_of, n=1,
        prompt=Prompt(text="Hi", max_tokens=max_tokens), sampling=SamplingSpec(max_tokens=max_tokens),
        budget=Budget.starting(arrived, budget_ms, response_margin_s=0, scoring_reserve_s=0),
        pruning=None, floor=floor,
    )


def answered(tokens: int, seconds: float, stopped_early=False) -> Selection:
    sc = ScoredCandidate(Candidate(index=0, text="x", finish_reason="stop", completion_tokens=tokens), 1.0)
    return Selection(chosen=[sc], scored=[sc], candidates_generated=1, prompt_tokens=1, completion_tokens=tokens,
                     stopped_early=stopped_early, candidates_pruned=0, generate_s=seconds, score_calls=())


def capacity(per_candidate_tokens_s: dict[int, float], **config) -> Capacity:
    clock = [NOW]
    cap = Capacity(AdmissionConfig(**config), clock=lambda: clock[0])
    for level, speed in per_candidate_tokens_s.items():
        cap.speed.observe(level, speed)
    cap.now = clock  # the tests move time by hand
    return cap


def test_decode_speed_predicts_unmeasured_levels_on_the_safe_side():
    speed = DecodeSpeed()
    assert speed.at(4) is None
    speed.observe(4, 10.0)
    assert speed.at(4) == 10.0
    assert speed.at(2) == 10.0  # below: no faster than measured
    assert speed.at(16) == pytest.approx(2.5)  # above: total throughput (40 tokens/s) stops growing
    speed.observe(4, 20.0)  # a moving average, not the last value
    assert speed.at(4) == pytest.approx(13.0)


def test_an_idle_engine_takes_everything_on_as_asked():
    cap = capacity({8: 8.0})  # 64 tokens at 8 tokens/s: 8 s, inside a 10 s budget
    with cap.reserve(plan(best_of=8)) as admitted:
        assert admitted == Ticket(candidates=8, concurrency=8)
        assert cap.candidates == 8
    assert cap.candidates == 0  # off the books when the block ends


def test_under_load_it_takes_fewer_candidates_before_refusing():
    cap = capacity({4: 16.0})  # 64 tokens/s in total from 4 candidates on
    with cap.reserve(plan(best_of=4)):
        # 4 running; 4 more make 8: 8 tokens/s each, 8 s for 64 tokens > 6.5 s. 2 more make 6: 6 s fits.
        with cap.reserve(plan(best_of=4, budget_ms=6500)) as second:
            assert second == Ticket(candidates=2, concurrency=6)


def test_a_request_that_cannot_finish_in_time_is_refused_with_the_predicted_retry_after():
    cap = capacity({4: 16.0})
    with cap.reserve(plan(best_of=4)):  # predicted end: 4 s from now
        with cap.reserve(plan(best_of=4)):  # 8 running: 8 s from now
            cap.now[0] = NOW + 0.5
            with pytest.raises(Overloaded) as refused:
                with cap.reserve(plan(best_of=4, budget_ms=5000, floor=2, arrived=NOW + 0.5)):
                    pass
    error = refused.value
    assert (error.status, error.code) == (503, "capacity")
    # With both ahead of it done at 8 s, the floor of 2 fits a fresh 5 s window; after the
    # first only (4 s), 6 running would need 6 s: so retry at 8 s, 7.5 s from now, stretched
    # by a random share of up to half so that refused clients do not all return at 8 s.
    assert 7500 <= int(error.headers["retry-after-ms"]) <= 11250
    assert 8 <= int(error.headers["Retry-After"]) <= 11
    assert cap.candidates == 0


def test_refused_clients_are_told_different_times_to_return():
    told = [retry_after(2.0, random.Random(seed)) for seed in range(50)]
    waits = [int(headers["retry-after-ms"]) for headers in told]
    assert min(waits) >= 2000 and max(waits) <= 3000
    assert max(waits) - min(waits) > 300  # spread over the window, not one instant
    assert {headers["Retry-After"] for headers in told} == {"2", "3"}
    assert retry_after(0.01, random.Random(0))["Retry-After"] in ("1", "2")  # never sooner than a second


def test_a_budget_too_tight_even_for_an_idle_engine_is_taken_on_not_refused():
    cap = capacity({1: 8.0})  # 64 tokens need 8 s alone; the client gave 2 s
    with cap.reserve(plan(best_of=4)):
        with cap.reserve(plan(best_of=2, budget_ms=2000)) as admitted:  # anytime selection does what it can
            assert admitted.candidates == 2


def test_disabled_admission_takes_everything_on():
    cap = capacity({1: 1.0}, enabled=False)
    with cap.reserve(plan(best_of=8)):
        with cap.reserve(plan(best_of=8)) as admitted:
            assert admitted.candidates == 8


def test_before_anything_is_measured_the_saturation_point_bounds_the_load():
    cap = capacity({})
    cap.saturation_candidates = 8
    with cap.reserve(plan(best_of=8)):
        with pytest.raises(Overloaded):
            with cap.reserve(plan(best_of=4, floor=1)):
                pass
    cap.saturation_candidates = 0  # and without one, nothing is refused blind
    with cap.reserve(plan(best_of=8)):
        with cap.reserve(plan(best_of=8)) as admitted:
            assert admitted.candidates == 8


def test_answers_teach_the_speed_and_how_much_of_max_tokens_answers_use():
    cap = capacity({})
    p = plan(best_of=2, max_tokens=64)
    with cap.reserve(p) as ticket:
        cap.observe(replace(p, ticket=ticket), answered(tokens=32, seconds=4.0))
    assert cap.speed.at(2) == pytest.approx(8.0)
    assert cap.fill == pytest.approx(1.0 - 0.3 * 0.5)  # half of max_tokens used, a moving average
    with cap.reserve(p) as ticket:
        cap.observe(replace(p, ticket=ticket), answered(tokens=8, seconds=4.0, stopped_early=True))
    assert cap.fill == pytest.approx(0.85)  # a deadline cut says nothing about answer length
