"""Early pruning with the fake generator: who gets aborted, when, and that they stop."""

import asyncio
import time

import pytest

from service.config import FakeGeneratorConfig, FakeRewardConfig
from service.generator.fake import FakeGenerator
from service.budget import Budget
from service.pruning import PruningPlan, victim_count
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from tests.selecting import best_of_n
from service.types import Deadline, Prompt, SamplingSpec

PROMPT = Prompt(text="Tell me something.")
TEN = " w3 w4 w5 w6 w7 w8 w9 w10"  # every candidate runs ten words
# The fake reward is the text's length: at a 2-word checkpoint, candidates 1 and 3
# lead, 0 and 2 trail. Candidate 0 would end longest: pruning judges the start only.
TEXTS = ["a b" + TEN + " and a very long ending", "longer start" + TEN, "c d" + TEN, "longest beginning" + TEN]


def generator(texts=TEXTS, seconds_per_token=0.02, judge=None, **kw):
    """A fake generator whose pruning judge is the fake reward (text length), unless given."""
    judge = judge or StaticCatalog({"fake": FakeReward(FakeRewardConfig())}, "fake")
    return FakeGenerator(FakeGeneratorConfig(texts=texts, seconds_per_token=seconds_per_token, **kw), judge)


def budget(ms):
    return Budget.starting(time.time(), ms, response_margin_s=0.0, scoring_reserve_s=0.1)


def select(gen, *, best_of=4, n=1, checkpoints=(2,), fraction=0.5, floor=1, budget_ms=5000):
    pruning = PruningPlan(tuple(checkpoints), fraction, floor, "fake")
    return asyncio.run(
        best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32), best_of=best_of, n=n,
                  budget=budget(budget_ms), pruning=pruning)
    )


def test_the_lowest_scoring_fraction_is_aborted_at_the_checkpoint():
    gen = generator()
    result = select(gen)
    assert result.candidates_pruned == 2 and gen.aborted == 2
    assert sorted(sc.candidate.index for sc in result.scored) == [1, 3]  # only the survivors are scored
    assert result.chosen[0].candidate.index == 3
    assert not result.stopped_early  # pruning is not the deadline
    # The pruned two stopped near the checkpoint, far short of their ten-plus words.
    assert gen.generated_tokens < 2 * 10 + 2 * 6


def test_without_pruning_the_late_bloomer_wins():
    gen = generator()
    reward = FakeReward(FakeRewardConfig())
    result = asyncio.run(best_of_n(gen, reward, PROMPT, SamplingSpec(max_tokens=32), best_of=4, n=1,
                                   budget=budget(5000)))
    assert result.chosen[0].candidate.index == 0 and result.candidates_pruned == 0


def test_pruned_candidates_generate_no_more_tokens():
    gen = generator(texts=["x" + " tok" * 100, "longer" + " tok" * 100], seconds_per_token=0.01)

    async def scenario():
        stream = gen.generate(PROMPT, SamplingSpec(max_tokens=101), 4, Deadline.after_ms(5000),
                              PruningPlan((3,), 0.5, 1, "fake"))
        pruned = []
        async for candidate in stream:
            if candidate.pruned:
                pruned.append(candidate)
                if len(pruned) == 2:
                    break
        await stream.aclose()  # aborts the survivors too
        frozen = gen.generated_tokens
        await asyncio.sleep(0.2)
        return pruned, frozen

    pruned, frozen = asyncio.run(scenario())
    assert sorted(c.index for c in pruned) == [0, 2]  # the "x ..." starts
    assert all(not c.finished and c.finish_reason == "length" and c.completion_tokens < 10 for c in pruned)
    assert gen.generated_tokens == frozen < 4 * 101


def test_never_fewer_than_the_floor():
    gen = generator()
    result = select(gen, floor=3, fraction=0.75)  # 0.75 of 4 would be 3
    assert result.candidates_pruned == 1
    assert len(result.scored) == 3


def test_candidates_finished_before_a_checkpoint_are_safe_and_count():
    # Candidate 1 ends at one word, before the 2-word checkpoint.
    texts = ["a b" + TEN, "done", "c d" + TEN, "longest beginning" + TEN]
    gen = generator(texts=texts)
    result = select(gen, floor=2, fraction=0.9)  # of 3 running, 2 may go: 1 finished + 1 left
    assert result.candidates_pruned == 2
    assert sorted(sc.candidate.index for sc in result.scored) == [1, 3]


def test_later_checkpoints_prune_again():
    texts = [f"{'w' * (i + 1)} x" + TEN for i in range(8)]  # the start grows with i
    gen = generator(texts=texts)
    result = select(gen, best_of=8, checkpoints=(2, 4), fraction=0.5)
    assert result.candidates_pruned == 4 + 2
    assert sorted(sc.candidate.index for sc in result.scored) == [6, 7]


def test_the_deadline_still_holds_while_pruning():
    slow_judge = StaticCatalog({"fake": FakeReward(FakeRewardConfig(seconds_per_call=5))}, "fake")
    gen = generator(seconds_per_token=0.1, judge=slow_judge)
    pruning = PruningPlan((2,), 0.5, 1, "fake")

    async def scenario():
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32), best_of=4,
                                 n=1, budget=budget(600), pruning=pruning)
        return result, loop.time() - began

    result, elapsed = asyncio.run(scenario())
    assert elapsed < 0.6 + 0.2
    assert result.stopped_early and result.candidates_pruned == 0  # the judge never answered


@pytest.mark.parametrize(
    "running, finished, fraction, keep, expected",
    [(4, 0, 0.5, 1, 2), (3, 0, 0.5, 1, 1), (4, 0, 0.5, 3, 1), (2, 2, 0.5, 4, 0), (8, 0, 0.9, 1, 7), (1, 0, 0.5, 1, 0)],
)
def test_victim_count(running, finished, fraction, keep, expected):
    assert victim_count(running, finished, fraction, keep) == expected


def test_the_judge_scores_with_the_reward_model_the_plan_names():
    # Two models disagree: "fake" likes long starts, "short" likes short ones.
    class Shortest(FakeReward):
        async def score(self, prompt, completions):
            return type(await super().score(prompt, completions))([-float(len(c)) for c in completions])

    judge = StaticCatalog({"fake": FakeReward(FakeRewardConfig()), "short": Shortest(FakeRewardConfig())}, "fake")
    pruning = PruningPlan((2,), 0.5, 1, "short")
    result = asyncio.run(best_of_n(generator(judge=judge), FakeReward(FakeRewardConfig()), PROMPT,
                                   SamplingSpec(max_tokens=32), best_of=4, n=1, budget=budget(5000), pruning=pruning))
    assert sorted(sc.candidate.index for sc in result.scored) == [0, 2]  # the short starts survived
    assert judge.rewards.models["short"].calls == 1 and judge.rewards.models["fake"].calls == 0


def test_a_generator_without_a_judge_refuses_to_prune():
    gen = FakeGenerator(FakeGeneratorConfig(texts=TEXTS))
    with pytest.raises(RuntimeError, match="without a judge"):
        asyncio.run(best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32), best_of=4,
                              n=1, budget=budget(5000), pruning=PruningPlan((2,), 0.5, 1, "fake")))


@pytest.mark.parametrize("field, value", [("checkpoints", (4, 2)), ("fraction", 1.0), ("floor", 0)])
def test_a_bad_pruning_plan_is_refused(field, value):
    args = {"checkpoints": (2,), "fraction": 0.5, "floor": 1, "reward_model": "fake", field: value}
    with pytest.raises(ValueError):
        PruningPlan(**args)


def test_a_pruning_plan_is_plain_data_that_pickles():
    import pickle

    plan = PruningPlan((8, 24), 0.5, 2, "style")
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_an_unavailable_judge_prunes_nobody():
    from service.errors import Overloaded

    class Gone(FakeReward):
        async def score(self, prompt, completions):
            raise Overloaded("scorer replica died", code="replica_unavailable")

    gen = generator(judge=StaticCatalog({"fake": Gone(FakeRewardConfig())}, "fake"))
    result = select(gen)
    assert result.candidates_pruned == 0 and len(result.scored) == 4  # the request went on whole
