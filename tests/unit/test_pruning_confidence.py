"""The confidence rule and adaptive N: who can still win, and when more candidates are drawn.

The rule is a pure function (`confident_victims`); the rest runs the fake generator,
whose judge is the fake reward (a text's length in characters)."""

import asyncio

import pytest

from service.config import ConfigError, FakeRewardConfig, parse_config
from service.errors import BadRequest
from service.partials import Curve
from service.protocol import ChatCompletionRequest
from service.pruning import PruningPlan, confident_victims
from service.reward.fake import FakeReward
from service.types import SamplingSpec
from tests.selecting import best_of_n
from tests.unit.test_pruning import PROMPT, TEN, TEXTS, budget, generator
from tests.unit.test_serving import ARGS, reranker


# --- the rule, pure ---------------------------------------------------------------------


def ranked(*scores, degenerate=()):
    """Candidates 0.. with these rewards, best first."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, scores[i], i in degenerate) for i in order]


def test_a_candidate_that_could_still_win_stays_and_the_rest_go_worst_first():
    # Leader 10; with noise 2 and confidence 1, all within 2 of it stay.
    assert confident_victims(ranked(10, 9, 7, 3), noise=2, confidence=1, room=8) == [3, 2]


def test_how_many_go_depends_on_how_well_the_judge_separates_them():
    field = ranked(10, 9, 7, 3)
    assert confident_victims(field, noise=20, confidence=1, room=8) == []  # an early, noisy judge: nobody
    assert confident_victims(field, noise=0.5, confidence=1, room=8) == [3, 2, 1]  # a sure one: all but the leader
    assert confident_victims(field, noise=2, confidence=3, room=8) == [3]  # more confidence asked: fewer go


def test_room_caps_the_victims_and_the_worst_go_first():
    assert confident_victims(ranked(10, 1, 2, 3), noise=1, confidence=1, room=2) == [1, 2]


def test_a_degenerate_text_goes_whatever_it_scored_and_the_best_of_all_degenerate_stays():
    assert confident_victims(ranked(10, 50, 9, degenerate={1}), noise=5, confidence=1, room=8) == [1]
    assert confident_victims(ranked(3, 2, degenerate={0, 1}), noise=5, confidence=1, room=8) == [1]


def test_the_best_seen_earlier_at_this_length_raises_the_bar():
    # A later wave is judged against the first wave's best at the same checkpoint.
    assert confident_victims(ranked(5, 4), noise=2, confidence=1, room=8) == []
    assert confident_victims(ranked(5, 4), noise=2, confidence=1, room=8, best_seen=10) == [1, 0]


def test_a_confidence_plan_needs_its_noise_and_one_rule():
    noise = Curve((8,), (2.0,))
    with pytest.raises(ValueError, match="one rule"):
        PruningPlan((8,), 0.5, 1, "fake", confidence=1.0, noise=noise)
    with pytest.raises(ValueError, match="noise"):
        PruningPlan((8,), None, 1, "fake", confidence=1.0)
    with pytest.raises(ValueError, match="first_wave"):
        PruningPlan((8,), 0.5, 1, "fake", first_wave=2)


def test_noise_is_interpolated_between_the_measured_lengths_and_flat_beyond():
    noise = Curve((4, 8, 16), (8.0, 4.0, 2.0))
    assert [noise.at(t) for t in (1, 4, 6, 12, 16, 64)] == [8.0, 8.0, 6.0, 3.0, 2.0, 2.0]


# --- through the generator's race ------------------------------------------------------


def plan(noise, confidence=1.0, first_wave=None, grow_at=0.0, checkpoints=(2,)):
    return PruningPlan(tuple(checkpoints), None, 1, "fake", confidence=confidence,
                       noise=Curve((1,), (float(noise),)), first_wave=first_wave, grow_at=grow_at)


def select(pruning, best_of=4):
    gen = generator()
    result = asyncio.run(best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32),
                                   best_of=best_of, n=1, budget=budget(5000), pruning=pruning))
    return gen, result


def test_the_confidence_rule_aborts_the_candidates_that_cannot_win_in_the_engine():
    # At two words the starts read 3, 12, 3 and 17 characters.
    gen, sure = select(plan(noise=3))  # only 17 is within 3 of 17
    assert sure.candidates_pruned == 3 and gen.aborted == 3
    assert [sc.candidate.index for sc in sure.scored] == [3]
    assert {c.index: c.pruned_at for c in sure.candidates if c.pruned} == {0: 2, 1: 2, 2: 2}
    _, unsure = select(plan(noise=6))  # 12 is within 6 of 17: it stays
    assert sorted(sc.candidate.index for sc in unsure.scored) == [1, 3]


def test_adaptive_n_draws_the_rest_where_the_first_wave_spreads():
    # First wave: candidates 0 and 1 (3 and 12 characters: a spread of 4.5).
    gen, spread = select(plan(noise=5, first_wave=2, grow_at=0.5))  # 4.5 > 0.5 x 5: draw 2 more
    assert spread.candidates_generated == 4
    assert spread.chosen[0].candidate.text == TEXTS[3]  # a drawn candidate won
    # Candidate 2 (3 characters) was judged against the first wave's best (12) as well as its own wave's.
    assert sorted(c.index for c in spread.candidates if c.pruned) == [0, 2]
    gen, agreed = select(plan(noise=5, first_wave=2, grow_at=1.0))  # 4.5 < 1 x 5: they agree, stop at 2
    assert agreed.candidates_generated == 2 and gen.aborted == 1
    assert agreed.chosen[0].candidate.text == TEXTS[1]
    assert agreed.completion_tokens < spread.completion_tokens


def test_an_unavailable_judge_prunes_nobody_and_draws_every_candidate():
    from service.errors import Overloaded
    from service.reward.catalog import StaticCatalog

    class Gone(FakeReward):
        async def score(self, prompt, completions):
            raise Overloaded("scorer replica died", code="replica_unavailable")

    gen = generator(judge=StaticCatalog({"fake": Gone(FakeRewardConfig())}, "fake"))
    result = asyncio.run(best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32),
                                   best_of=4, n=1, budget=budget(5000), pruning=plan(noise=5, first_wave=2)))
    assert result.candidates_generated == 4 and result.candidates_pruned == 0  # the request went on whole


def test_a_later_wave_is_judged_at_every_checkpoint_too():
    texts = [f"{'w' * (i + 1)} x" + TEN for i in range(8)]  # the start grows with i
    gen = generator(texts=texts)
    pruning = plan(noise=0.8, first_wave=4, grow_at=0.1, checkpoints=(2, 4))
    result = asyncio.run(best_of_n(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=32),
                                   best_of=8, n=1, budget=budget(5000), pruning=pruning))
    assert result.candidates_generated == 8
    assert [sc.candidate.index for sc in result.scored] == [7]  # the best of both waves
    # Each wave alone at 2 words (the second against the first's best too), then both together at 4.
    pruned_at = {c.index: c.pruned_at for c in result.candidates if c.pruned}
    assert pruned_at == {0: 2, 1: 2, 2: 2, 3: 4, 4: 2, 5: 2, 6: 2}


# --- config and requests ------------------------------------------------------------------

CONFIDENT = {"enabled": True, "min_best_of": 4, "checkpoints": [2], "fraction": 0.5,
             "confidence_rule": {"from_best_of": 4, "checkpoints": [2], "confidence": 1.0,
                                 "noise": {"fake": {"tokens": [2], "spread": [3.0]}}, "first_wave": 2,
                                 "grow_at": 0.5}}


def planned(config_pruning, **body):
    r = reranker(pruning=config_pruning)
    request = ChatCompletionRequest.model_validate(
        {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}], "best_of": 4, **body})
    return asyncio.run(r.plan(request)).pruning


def with_rule(**rule):
    return CONFIDENT | {"confidence_rule": CONFIDENT["confidence_rule"] | rule}


def test_the_configured_confidence_rule_reaches_the_plan_with_its_noise():
    pruning = planned(CONFIDENT)
    assert pruning.fraction is None and pruning.confidence == 1.0 and pruning.noise.at(2) == 3.0
    assert pruning.first_wave == 2 and pruning.starting(4) == 2


def test_the_confidence_rule_takes_requests_from_its_best_of_and_the_fraction_rule_the_rest():
    config = with_rule(from_best_of=8, checkpoints=[4, 8])
    assert planned(config, best_of=7).fraction == 0.5 and planned(config, best_of=7).checkpoints == (2,)
    assert planned(config, best_of=8).confidence == 1.0 and planned(config, best_of=8).checkpoints == (4, 8)


def test_a_reward_model_without_noise_is_pruned_by_the_fraction_rule():
    pruning = planned(CONFIDENT, reward_model="slow")
    assert pruning.fraction == 0.5 and pruning.confidence is None


def test_a_request_may_ask_for_either_rule():
    assert planned(CONFIDENT, pruning={"fraction": 0.25}).fraction == 0.25  # a fraction alone: the fraction rule
    assert planned(CONFIDENT, pruning={"rule": "fraction"}).fraction == 0.5
    measured = with_rule(from_best_of=32)  # the fraction rule for 4 candidates, but the noise is measured
    assert planned(measured).fraction == 0.5
    assert planned(measured, pruning={"confidence": 2.0}).confidence == 2.0
    assert planned(measured, pruning={"rule": "confidence"}).confidence == 1.0


def test_the_confidence_rule_without_measured_noise_is_a_400_naming_the_field():
    with pytest.raises(BadRequest) as err:
        planned(ARGS["pruning"], pruning={"rule": "confidence"})
    assert err.value.param == "pruning.rule"


@pytest.mark.parametrize("pruning", [{"fraction": 0.5, "confidence": 1.0}, {"rule": "fraction", "confidence": 1.0},
                                     {"rule": "confidence", "fraction": 0.5}])
def test_a_request_gives_one_rule_or_hears_so(pruning):
    from tests.api_client import make_client

    r = make_client().post("/v1/completions", json={"model": "fake-model", "prompt": "Hi", "pruning": pruning})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("pruning")


def test_streams_start_every_candidate_at_once():
    assert planned(CONFIDENT, stream=True).first_wave is None


def test_noise_must_name_a_configured_reward_model_and_be_positive():
    with pytest.raises(ConfigError, match="pruning.confidence_rule.noise"):
        parse_config(ARGS | {"pruning": with_rule(noise={"nope": {"tokens": [2], "spread": [1.0]}})})
    with pytest.raises(ConfigError, match="spread"):
        parse_config(ARGS | {"pruning": with_rule(noise={"fake": {"tokens": [2], "spread": [0.0]}})})


def test_reranking_says_what_was_spent_and_why():
    from tests.api_client import make_client

    texts = ["a b" + TEN, "longer start" + TEN, "c d" + TEN, "longest beginning" + TEN]
    client = make_client(texts=texts, generator={"seconds_per_token": 0.01},
                         pruning=with_rule(noise={"fake": {"tokens": [2], "spread": [5.0]}}))
    body = {"model": "fake-model", "prompt": "Say something.", "best_of": 4, "return_candidates": True}
    spread = client.post("/v1/completions", json=body).json()["reranking"]
    # The first two (3 and 12 characters at two words) spread: two more were drawn; the 3s went at 2 words.
    assert spread["first_wave"] == 2 and spread["candidates_drawn_late"] == 2
    assert spread["candidates_generated"] == 4 and spread["pruned_at"] == {"2": 2}
    agreed = client.post("/v1/completions", json=body | {"pruning": {"rule": "confidence", "checkpoints": [1]}})
    # At one word (1 and 6 characters) the first wave agrees within 0.5 x 5: the rest never start.
    assert agreed.json()["reranking"]["candidates_drawn_late"] == 0
    assert agreed.json()["reranking"]["candidates_generated"] == 2
    whole = client.post("/v1/completions", json=body | {"pruning": False}).json()["reranking"]
    assert whole.get("first_wave") is None and whole["pruned_at"] == {} and whole["candidates_generated"] == 4


# --- branching ---------------------------------------------------------------------------


def test_the_branch_rule_keeps_the_leaders_and_continues_their_text_with_new_candidates():
    from service.pruning import Branching

    pruning = PruningPlan((2,), None, 1, "fake", branch=Branching(at=2, leaders=1, per_leader=2))
    gen, result = select(pruning)
    # At two words "longest beginning" (candidate 3) leads; the other three go there.
    assert sorted(c.index for c in result.candidates if c.pruned) == [0, 1, 2]
    branches = [c for c in result.candidates if c.branched]
    assert [c.index for c in branches] == [4, 5] and result.candidates_generated == 6
    # Each branch is the leader's two words and then its own: candidate 4 goes on as TEXTS[0] does.
    assert branches[0].text == "longest beginning " + " ".join(TEXTS[0].split()[2:])
    assert branches[0].completion_tokens == len(TEXTS[0].split()) - 2  # only what it generated
    assert result.chosen[0].candidate.index == 4  # the longest text: a branch won


def test_a_branch_plan_needs_its_checkpoint_and_a_generator_that_can_branch():
    from service.config import OpenAIGeneratorConfig
    from service.generator.openai import OpenAIGenerator
    from service.pruning import Branching

    with pytest.raises(ValueError, match="branch.at"):
        PruningPlan((2, 4), None, 1, "fake", branch=Branching(at=2))
    assert generator().can_branch
    server = OpenAIGenerator(OpenAIGeneratorConfig(url="http://127.0.0.1:9", served_model_name="m"))
    assert not server.can_branch
    with pytest.raises(BadRequest) as err:
        server.judging(PROMPT, 4, PruningPlan((2,), None, 1, "fake", branch=Branching(at=2)), None)
    assert err.value.param == "pruning.rule"


def test_the_branch_rule_is_asked_for_configured_and_not_for_streams():
    branching = CONFIDENT | {"branch_rule": {"at": 2, "leaders": 1, "per_leader": 3}}
    plan = planned(branching, pruning={"rule": "branch"})
    assert plan.branch.leaders == 1 and plan.branch.per_leader == 3 and plan.checkpoints == (2,)
    assert planned(branching).branch is None  # only when asked
    for config, body in ((CONFIDENT, {}), (branching, {"stream": True})):
        with pytest.raises(BadRequest) as err:
            planned(config, pruning={"rule": "branch"}, **body)
        assert err.value.param == "pruning.rule"


def test_reranking_counts_the_branches_and_usage_what_they_generated():
    from tests.api_client import make_client, metric

    texts = ["a b" + TEN, "longer start" + TEN, "c d" + TEN, "longest beginning" + TEN]
    client = make_client(texts=texts, generator={"seconds_per_token": 0.01},
                         pruning={"branch_rule": {"at": 2, "leaders": 1, "per_leader": 2}})
    body = {"model": "fake-model", "prompt": "Say something.", "best_of": 4, "return_candidates": True,
            "pruning": {"rule": "branch"}}
    before = metric(client, "prune_candidates_branched_total") or 0
    answer = client.post("/v1/completions", json=body).json()
    assert metric(client, "prune_candidates_branched_total") == before + 2
    reranking = answer["reranking"]
    assert reranking["candidates_branched"] == 2 and reranking["candidates_generated"] == 6
    assert reranking["pruned_at"] == {"2": 3}
    # Three pruned at about two words, the leader's ten, and each branch's own eight words.
    assert 3 * 2 + 10 + 2 * 8 <= answer["usage"]["completion_tokens"] <= 3 * 3 + 10 + 2 * 8
