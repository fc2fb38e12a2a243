"""Best-of-N selection with the fake generator and reward: no Ray, no HTTP."""

import asyncio
import time

import pytest

from service.config import FakeGeneratorConfig, FakeRewardConfig
from service.errors import BudgetExhausted
from service.generator.fake import FakeGenerator
from service.reward.fake import FakeReward
from tests.selecting import best_of_n
from service.budget import Budget
from service.reward.base import RewardModel
from service.types import Prompt, SamplingSpec, Scores

PROMPT = Prompt(text="Tell me something.")


def budget(ms: float, scoring_reserve_s: float = 0.1) -> Budget:
    """A budget starting now, with no response margin: selection aims at the deadline itself.
    Generation stops `scoring_reserve_s` earlier (the service always keeps some back)."""
    return Budget.starting(time.time(), ms, response_margin_s=0.0, scoring_reserve_s=scoring_reserve_s)


def run(coro):
    return asyncio.run(coro)


def select(generator, reward=None, *, best_of=4, n=1, budget_ms=5000, max_tokens=32, seed=None):
    return run(
        best_of_n(
            generator,
            reward or FakeReward(FakeRewardConfig()),
            PROMPT,
            SamplingSpec(max_tokens=max_tokens, seed=seed),
            best_of=best_of,
            n=n,
            budget=budget(budget_ms),
        )
    )


def test_highest_reward_wins():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["short", "the longest text here", "medium text"]))
    result = select(gen, best_of=3)
    assert result.chosen[0].candidate.text == "the longest text here"
    assert result.chosen[0].score == len("the longest text here")
    assert result.candidates_generated == 3 and len(result.scored) == 3
    assert not result.stopped_early


def test_ties_go_to_the_earlier_candidate():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["aaaa", "bbbb", "cccc"]))
    assert select(gen, best_of=3).chosen[0].candidate.text == "aaaa"


def test_identical_texts_count_once_and_n_returns_distinct_best():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["same words", "same words", "a bit longer words", "x"]))
    result = select(gen, best_of=4, n=3)
    assert [sc.candidate.text for sc in result.chosen] == ["a bit longer words", "same words", "x"]
    assert len(result.scored) == 3  # the duplicate was not scored twice
    assert result.candidates_generated == 4


def test_n_larger_than_distinct_candidates_returns_what_there_is():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["only one text"]))
    assert len(select(gen, best_of=4, n=3).chosen) == 1


def test_seed_shifts_candidates_reproducibly():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["a", "bb", "ccc", "dddd"]))
    first = select(gen, best_of=2, seed=1)
    again = select(gen, best_of=2, seed=1)
    assert [s.candidate.text for s in first.scored] == [s.candidate.text for s in again.scored] == ["bb", "ccc"]


def test_usage_counts_every_candidates_tokens():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["one two three", "four five"]))
    assert select(gen, best_of=4).completion_tokens == 3 + 2 + 3 + 2


def test_deadline_returns_best_finished_and_aborts_the_rest():
    # Candidates 0 and 2 are instant; 1 and 3 start after 5 s, far past the 300 ms budget.
    gen = FakeGenerator(
        FakeGeneratorConfig(texts=["fast", "slow but very long text", "fast two"], candidate_delays_s=[0, 5])
    )
    result = select(gen, best_of=4, budget_ms=300)
    assert result.stopped_early
    assert result.chosen[0].candidate.text == "fast two"
    assert all(sc.candidate.finished for sc in result.scored)
    assert gen.aborted == 2


def test_partial_candidates_are_used_when_none_finished():
    gen = FakeGenerator(
        FakeGeneratorConfig(texts=["w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15"], seconds_per_token=0.05)
    )
    result = select(gen, best_of=2, budget_ms=300)
    assert result.stopped_early
    chosen = result.chosen[0].candidate
    assert not chosen.finished and chosen.finish_reason == "length"
    assert 0 < chosen.completion_tokens < 15


def test_no_text_by_the_deadline_is_a_504():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["never arrives"], candidate_delays_s=[5]))
    with pytest.raises(BudgetExhausted) as info:
        select(gen, best_of=2, budget_ms=200)
    assert info.value.status == 504 and info.value.param == "latency_budget_ms"


def test_aborted_candidates_generate_no_more_tokens():
    gen = FakeGenerator(FakeGeneratorConfig(texts=[" ".join(["tok"] * 200)], seconds_per_token=0.01))

    async def scenario():
        await best_of_n(
            gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=200),
            best_of=3, n=1, budget=budget(200),
        )
        after_return = gen.generated_tokens
        await asyncio.sleep(0.3)
        return after_return

    after_return = run(scenario())
    assert gen.generated_tokens == after_return < 3 * 200
    assert gen.aborted == 3


def test_a_reward_that_miscounts_is_an_error_not_a_silent_pick():
    class Broken(FakeReward):
        async def score(self, prompt, completions):
            return Scores([1.0] * (len(completions) - 1))

    gen = FakeGenerator(FakeGeneratorConfig(texts=["a", "bb"]))
    with pytest.raises(RuntimeError, match=r"returned \d+ scores for \d+"):
        select(gen, Broken(FakeRewardConfig()), best_of=2)


def test_n_must_not_exceed_best_of():
    with pytest.raises(ValueError):
        select(FakeGenerator(FakeGeneratorConfig()), best_of=2, n=3)


def test_candidates_are_scored_as_they_finish_in_micro_batches():
    # Three candidates finish at once, one 0.3 s later: two reward calls, the first
    # made while the slow candidate is still generating.
    calls = []

    class Recording(FakeReward):
        async def score(self, prompt, completions):
            calls.append((asyncio.get_running_loop().time(), list(completions)))
            return await super().score(prompt, completions)

    gen = FakeGenerator(FakeGeneratorConfig(texts=["a", "bb", "ccc", "dddd"], candidate_delays_s=[0, 0, 0, 0.3]))
    result = select(gen, Recording(FakeRewardConfig()), best_of=4)
    assert result.chosen[0].candidate.text == "dddd"
    assert [len(batch) for _, batch in calls] == [3, 1]  # the three that finished together, then the slow one
    assert calls[-1][0] - calls[0][0] >= 0.25
    assert len(result.score_calls) == 2 and [call.texts for call in result.score_calls] == [3, 1]


def test_margin_and_uplift():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["aa", "b", "cccc"]))
    result = select(gen, best_of=3)
    assert result.uplift == 4 - 2  # best minus candidate 0
    assert result.margin == 4 - 2  # best minus median (2)


def test_a_failing_reward_fails_the_request():
    class Failing(FakeReward):
        async def score(self, prompt, completions):
            raise ConnectionError("reward service down")

    with pytest.raises(ConnectionError):
        select(FakeGenerator(FakeGeneratorConfig(texts=["a", "bb"])), Failing(FakeRewardConfig()), best_of=2)


def test_an_ensemble_ranks_candidates_scored_in_different_micro_batches_together():
    from service.config import EnsembleMember, EnsembleRewardConfig, SlopRewardConfig
    from service.reward import make_reward_models

    reward = make_reward_models({
        "fake": FakeRewardConfig(), "slop": SlopRewardConfig(),
        "mix": EnsembleRewardConfig(members=[EnsembleMember(name="fake"), EnsembleMember(name="slop")],
                                    scale="request"),
    })["mix"]
    texts = ["Great question! It depends.", "Keep bread in a paper bag, then freeze it.", "ok"]
    gen = FakeGenerator(FakeGeneratorConfig(texts=texts, candidate_delays_s=[0, 0.2, 0.4]))
    result = select(gen, reward, best_of=3)
    assert len(result.score_calls) == 3  # one candidate per call
    assert result.chosen[0].candidate.text == texts[1]
    assert result.chosen[0].score > 0 and sum(sc.score for sc in result.scored) == pytest.approx(0, abs=1e-3)


def test_scoring_that_would_overrun_the_deadline_leaves_the_best_so_far():
    # Candidate 0 is scored by 0.4 s; candidate 1 finishes at 0.3 s, but its scoring
    # (0.4 s per call) would end at 0.8 s, past the 0.6 s deadline: answer with candidate 0.
    gen = FakeGenerator(FakeGeneratorConfig(texts=["first", "second and better"], candidate_delays_s=[0, 0.3]))
    slow = FakeReward(FakeRewardConfig(seconds_per_call=0.4))

    async def scenario():
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await best_of_n(gen, slow, PROMPT, SamplingSpec(max_tokens=8), best_of=2, n=1,
                                 budget=budget(600))
        return result, loop.time() - began

    result, elapsed = run(scenario())
    assert elapsed < 0.6 + 0.1
    assert result.chosen[0].candidate.text == "first" and len(result.scored) == 1
    assert result.stopped_early and result.candidates_generated == 2


def test_a_scoring_reserve_stops_generation_early_enough_to_score_partials():
    # Nothing finishes within 2 s; scoring two texts takes 0.4 s. With 0.5 s kept
    # back, generation stops at 1.5 s and the partials are scored by the deadline.
    gen = FakeGenerator(FakeGeneratorConfig(texts=[" ".join(["tok"] * 500)], seconds_per_token=0.02))
    slow = FakeReward(FakeRewardConfig(seconds_per_call=0.4))

    async def scenario(reserve_s):
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await best_of_n(gen, slow, PROMPT, SamplingSpec(max_tokens=500), best_of=2, n=1,
                                 budget=budget(2000, scoring_reserve_s=reserve_s))
        return result, loop.time() - began

    result, elapsed = run(scenario(0.5))
    assert not result.chosen[0].candidate.finished  # a partial answer
    assert elapsed < 2.0 + 0.15
    # With nothing kept back the partials cannot be scored by the deadline: a 504
    # at the deadline, not a late answer.
    began = time.monotonic()
    with pytest.raises(BudgetExhausted):
        run(scenario(0.0))
    assert 2.0 - 0.05 < time.monotonic() - began < 2.0 + 0.15


def test_a_call_stuck_past_the_deadline_is_a_504_at_the_deadline():
    # The reward never answers; the fallback scoring has no deadline of its own.
    gen = FakeGenerator(FakeGeneratorConfig(texts=["w " * 50], seconds_per_token=0.05))
    stuck = FakeReward(FakeRewardConfig(seconds_per_call=60))

    async def scenario():
        b = budget(300)
        with pytest.raises(BudgetExhausted):
            await best_of_n(gen, stuck, PROMPT, SamplingSpec(max_tokens=50), best_of=2, n=1, budget=b)
        return time.time() - b.answer_by.at

    late_by = run(scenario())
    assert -0.05 < late_by < 0.3


def test_no_candidate_starts_once_the_time_to_generate_has_passed():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["a b c"]))
    late = Budget.starting(time.time() - 2.0, 1000, response_margin_s=0.0, scoring_reserve_s=0.0)
    started = time.monotonic()
    with pytest.raises(BudgetExhausted):
        run(best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=3), best_of=2, n=1,
                      budget=late))
    assert time.monotonic() - started < 0.05 and gen.generated_tokens == 0


SLOPPY_IS_LONGEST = ["Great question! I hope this helps! Let me know if you have any other questions.",
                     "Keep bread in a paper bag."]


def test_an_unavailable_reward_model_degrades_to_the_fallback_for_every_candidate():
    from service.errors import Overloaded
    from service.reward.slop import SlopReward

    class GoneAfterFirstCall(FakeReward):
        async def score(self, prompt, completions):
            if self.calls:
                raise Overloaded("scorer replica died", code="replica_unavailable")
            return await super().score(prompt, completions)

    gen = FakeGenerator(FakeGeneratorConfig(texts=SLOPPY_IS_LONGEST, candidate_delays_s=[0, 0.2]))
    result = run(best_of_n(gen, GoneAfterFirstCall(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32),
                           best_of=2, n=1, budget=budget(5000), fallback=SlopReward()))
    assert result.degraded == "scorer_unavailable"
    # Both candidates scored by slop (the first one again), so the plain one wins on one scale.
    assert result.chosen[0].candidate.text == SLOPPY_IS_LONGEST[1] and len(result.scored) == 2
    assert len(result.score_calls) == 1  # only the request's own model's call teaches the scoring cost


def test_without_a_fallback_an_unavailable_reward_model_fails_the_request():
    from service.errors import Overloaded

    class Gone(FakeReward):
        async def score(self, prompt, completions):
            raise Overloaded("scorer replica died", code="replica_unavailable")

    with pytest.raises(Overloaded):
        select(FakeGenerator(FakeGeneratorConfig(texts=["a", "bb"])), Gone(FakeRewardConfig()), best_of=2)


def test_a_stuck_reward_model_degrades_when_selection_must_end():
    from service.reward.slop import SlopReward

    gen = FakeGenerator(FakeGeneratorConfig(texts=SLOPPY_IS_LONGEST))
    stuck = FakeReward(FakeRewardConfig(seconds_per_call=60))
    b = budget(800)
    result = run(best_of_n(gen, stuck, PROMPT, SamplingSpec(max_tokens=32), best_of=2, n=1, budget=b,
                           fallback=SlopReward()))
    assert time.time() < b.answer_by.at + 0.05
    assert result.degraded == "scorer_slow" and result.chosen[0].candidate.text == SLOPPY_IS_LONGEST[1]


class ShortestWins(RewardModel):
    """A reward that likes brevity to a fault, the way partial-text judging can."""

    kind = "shortest"

    async def score(self, prompt, completions):
        return Scores(values=[-float(len(text)) for text in completions])


def test_a_degenerate_candidate_never_wins_while_a_real_one_finished():
    gen = FakeGenerator(FakeGeneratorConfig(texts=["", "   ", "hi", "a real answer"]))
    assert select(gen, ShortestWins()).chosen[0].candidate.text == "hi"
    strict = run(best_of_n(gen, ShortestWins(), PROMPT, SamplingSpec(max_tokens=32), best_of=4, n=1,
                           budget=budget(5000), min_chars=5))
    assert strict.chosen[0].candidate.text == "a real answer"


def test_an_empty_finished_candidate_loses_to_a_partial_one_with_text():
    # Candidate 0 "finishes" at once with nothing; candidate 1 is cut short by the deadline.
    gen = FakeGenerator(FakeGeneratorConfig(texts=["", "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15"],
                                            seconds_per_token=0.05))
    result = select(gen, ShortestWins(), best_of=2, budget_ms=400)
    chosen = result.chosen[0].candidate
    assert chosen.text.startswith("w1") and not chosen.finished and chosen.finish_reason == "length"
