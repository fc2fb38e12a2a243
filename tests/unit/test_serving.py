"""The Reranker and its Budget, without HTTP: what a plan holds, where its time
points come from, and what the scoring-cost estimate learns."""

import asyncio
import time

import pytest

from service.budget import Budget
from service.config import FakeRewardConfig, parse_config
from service.errors import BadRequest, BudgetExhausted, NotFound
from service.generator.fake import FakeGenerator
from service.protocol import ChatCompletionRequest, CompletionRequest
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from service.plan import ScoringCost
from service.serving import Reranker, local_reranker

TEXTS = ["A short one.", "The longest candidate of them all.", "A medium candidate."]
ARGS = {
    "generator": {"kind": "fake", "texts": TEXTS, "served_model_name": "fake-model", "seconds_per_token": 0.01},
    "reward_models": {"fake": {"kind": "fake"}, "slow": {"kind": "fake", "seconds_per_call": 0.2}},
    "default_reward_model": "fake",
    "limits": {"best_of_default": 3, "response_margin_ms": 300},
    "pruning": {"enabled": True, "min_best_of": 4, "checkpoints": [2], "fraction": 0.5},
}


def reranker(scoring_cost=None, **overrides) -> Reranker:
    config = parse_config(ARGS | overrides)
    rewards = {"fake": FakeReward(FakeRewardConfig()), "slow": FakeReward(FakeRewardConfig(seconds_per_call=0.2))}
    catalog = StaticCatalog(rewards, config.default_reward_model)
    return Reranker(config, FakeGenerator(config.generator, judge=catalog), catalog, scoring_cost)


def request(**body) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "fake-model", "prompt": "Say something.", **body})


def run(coro):
    return asyncio.run(coro)


# --- Budget --------------------------------------------------------------------------


def test_every_time_point_comes_from_the_arrival_and_the_budget():
    b = Budget.starting(1000.0, 10_000, response_margin_s=0.3, scoring_reserve_s=0.5)
    assert b.answer_by.at == 1010.0  # a 504 leaves at the client's deadline, never after it
    assert b.select_by.at == pytest.approx(1009.7)
    assert b.generate_by.at == pytest.approx(1009.2)
    assert b.deadline_ms == 1_010_000 and b.elapsed_ms(1001.5) == 1500.0


def test_reserves_take_at_most_a_quarter_of_a_tight_budget():
    b = Budget.starting(0.0, 800, response_margin_s=0.3, scoring_reserve_s=5.0)
    assert b.select_by.at == pytest.approx(0.6)  # margin capped at 800 ms / 4
    assert b.generate_by.at == pytest.approx(0.45)  # reserve capped at 600 ms / 4


# --- plan ----------------------------------------------------------------------------


def test_a_plan_is_a_frozen_record_of_the_decisions():
    r = reranker()
    plan = run(r.plan(request(best_of=4, max_tokens=20, latency_budget_ms=2000, n=2), arrived=500.0))
    assert (plan.reward_model, plan.best_of, plan.effective_best_of, plan.n, plan.max_tokens) == ("fake", 4, 4, 2, 20)
    assert plan.prompt.text == "Say something." and plan.prompt.max_tokens == 20  # slop judges length against it
    assert plan.budget.arrived == 500.0 and plan.budget.answer_by.at == 502.0
    assert plan.pruning is not None and plan.pruning.reward_model == "fake" and plan.pruning.floor == 2
    with pytest.raises(AttributeError):
        plan.best_of = 8


def test_defaults_come_from_the_config():
    plan = run(reranker().plan(request()))
    assert (plan.best_of, plan.max_tokens, plan.budget.budget_ms, plan.pruning) == (3, 64, 30_000, None)


def test_chat_requests_plan_the_same_way():
    chat = ChatCompletionRequest.model_validate(
        {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 7})
    plan = run(reranker().plan(chat))
    assert plan.prompt.messages[0]["content"] == "Hi" and plan.max_tokens == 7


@pytest.mark.parametrize(
    "body, error, param",
    [({"model": "other"}, NotFound, "model"), ({"reward_model": "mine"}, NotFound, "reward_model"),
     ({"best_of": 17}, BadRequest, "best_of"), ({"max_tokens": 513}, BadRequest, "max_tokens"),
     ({"latency_budget_ms": 120_001}, BadRequest, "latency_budget_ms"), ({"n": 4, "best_of": 3}, BadRequest, "n")],
)
def test_a_plan_refuses_what_the_limits_do_not_allow(body, error, param):
    with pytest.raises(error) as info:
        run(reranker().plan(request(**body)))
    assert info.value.param == param


# --- the scoring-cost estimate --------------------------------------------------------


def test_the_scoring_cost_is_learned_per_reranker_and_moves_the_generation_stop():
    first, second = reranker(), reranker()
    cold = run(first.plan(request(best_of=3, reward_model="slow", latency_budget_ms=10_000), arrived=0.0))
    assert cold.budget.select_by.at - cold.budget.generate_by.at == pytest.approx(0.15)  # the floor
    run(first.run(run(first.plan(request(best_of=3, reward_model="slow")))))
    learned = first.scoring_cost.per_text["slow"]
    assert learned >= 0.2 / 3  # one 0.2 s call for three texts
    warm = run(first.plan(request(best_of=3, reward_model="slow", latency_budget_ms=10_000), arrived=0.0))
    assert warm.budget.select_by.at - warm.budget.generate_by.at == pytest.approx(learned * 3)
    assert second.scoring_cost.per_text == {}  # nothing shared between processes' rerankers


def test_a_preset_scoring_cost_is_used_as_given():
    cost = ScoringCost(floor_s=0.0)
    cost.observe("fake", [(1.0, 4)])
    plan = run(reranker(scoring_cost=cost).plan(request(best_of=4, latency_budget_ms=10_000), arrived=0.0))
    assert plan.budget.select_by.at - plan.budget.generate_by.at == pytest.approx(1.0)


def test_scoring_cost_is_a_moving_average():
    cost = ScoringCost(weight=0.5, floor_s=0.0)
    cost.observe("m", [(1.0, 2), (2.0, 2)])  # 0.5 s per text, then 1.0
    assert cost.per_text["m"] == pytest.approx(0.75) and cost.reserve("m", 4) == pytest.approx(3.0)
    assert cost.reserve("unknown", 4) == 0.0


# --- run -----------------------------------------------------------------------------


def test_run_answers_by_the_plan_and_prunes_as_configured():
    r = reranker()
    selection = run(r.run(run(r.plan(request(best_of=4)))))
    assert selection.chosen[0].candidate.text == TEXTS[1]
    assert selection.candidates_pruned == 2  # pruning on for 4+ candidates in this config


def test_the_budget_counts_from_arrival_not_from_when_the_plan_is_made():
    # The request arrived 0.5 s before it was planned (it waited in front of the
    # handler): of a 1 s budget (selection aims 0.25 s early, generation stops
    # 0.15 s before that), 0.1 s is left to generate; the answer comes in time.
    r = reranker(generator={"kind": "fake", "texts": TEXTS, "served_model_name": "fake-model",
                            "candidate_delays_s": [0, 5]})
    arrived = time.time() - 0.5
    selection = run(r.run(run(r.plan(request(best_of=4, latency_budget_ms=1000), arrived=arrived))))
    assert time.time() - arrived < 1.0
    assert selection.stopped_early


def test_a_request_that_waited_past_its_generation_time_is_a_504_without_generating():
    r = reranker()
    arrived = time.time() - 0.9
    plan = run(r.plan(request(best_of=4, latency_budget_ms=1000), arrived=arrived))
    with pytest.raises(BudgetExhausted):
        run(r.run(plan))
    assert time.time() - arrived < 1.0 and r.generator.generated_tokens == 0


def test_local_reranker_builds_the_config_in_one_process():
    config = parse_config(ARGS)
    r = run(local_reranker(config))
    assert r.generator.judge is r.catalog  # pruning judged by the same models
    selection = run(r.run(run(r.plan(request(best_of=4)))))
    assert selection.candidates_pruned == 2 and selection.chosen[0].candidate.text == TEXTS[1]


# --- admit ---------------------------------------------------------------------------


def adaptive_reductions() -> float:
    from service import metrics

    return metrics.ADAPTIVE_REDUCTIONS._value.get()


def test_a_request_lowered_by_saturation_and_again_by_admission_counts_as_one_reduction():
    r = reranker(limits={"best_of_default": 3, "best_of_max": 16, "saturation_candidates": 10},
                 admission={"enabled": True})
    loads = []

    async def load():
        loads.append(1)
        return 4  # 4 candidates of other requests generating: saturation leaves room for 6 of 8

    r.generator.load = load
    r.capacity.speed.observe(8, 7.875)  # 63 tokens/s in total from 8 candidates on
    before = adaptive_reductions()

    async def admitted(best_of):
        # 64 tokens in the 9.55 s this budget leaves to generate: with 10 running they take 10.2 s,
        # too slow; with 9, 9.1 s. So of the 6 saturation leaves, admission takes 5.
        async with r.admit(request(best_of=best_of, max_tokens=64, latency_budget_ms=10_000)) as plan:
            return plan

    plan = run(admitted(8))
    assert (plan.best_of, plan.candidates, plan.effective_best_of) == (8, 6, 5)
    assert adaptive_reductions() == before + 1
    assert len(loads) == 1  # the generator's load is read once per request
    assert run(admitted(2)).effective_best_of == 2 and adaptive_reductions() == before + 1  # not lowered: not counted
