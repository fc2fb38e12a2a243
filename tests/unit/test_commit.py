"""Leader-commit streams (service.commit) and the fair partial-text rule
(service.partials), with the fake generator and reward: no Ray, no HTTP."""

import asyncio
import time

import pytest

from service.budget import Budget
from service.commit import NEVER, CommitPlan
from service.config import FakeGeneratorConfig, FakeRewardConfig
from service.errors import Overloaded
from service.generator.fake import FakeGenerator
from service.partials import PartialOffsets
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from service.selection import Commit, Piece, Selection
from service.types import Prompt, SamplingSpec
from tests.selecting import rerank_events

PROMPT = Prompt(text="Tell me something.")
# The fake reward is a text's length: at 2 tokens candidate 1 leads ("longword another").
TEXTS = ["a b c d e f g h", "longword another x y z w v u t s", "mid words here and more"]


def judged_generator(texts=TEXTS, seconds_per_token=0.02, reward=None, **config):
    catalog = StaticCatalog({"fake": reward or FakeReward(FakeRewardConfig())}, "fake")
    config = FakeGeneratorConfig(texts=texts, seconds_per_token=seconds_per_token, **config)
    return FakeGenerator(config, judge=catalog)


def budget(ms=5000):
    return Budget.starting(time.time(), ms, response_margin_s=0.0, scoring_reserve_s=0.1)


def stream(gen, *, best_of=3, n=1, commit=None, ms=5000, max_tokens=32, offsets=None, on_event=None):
    """Every event of one request; `on_event(event, gen)` sees each as it comes."""
    async def collect():
        events = []
        async for event in rerank_events(gen, FakeReward(FakeRewardConfig()), PROMPT, SamplingSpec(max_tokens=max_tokens),
                                         best_of=best_of, n=n, budget=budget(ms), commit=commit, offsets=offsets):
            if on_event:
                on_event(event, gen)
            events.append(event)
        return events

    return asyncio.run(collect())


def leader(at_tokens=2, leaders=1):
    return CommitPlan(at_tokens=at_tokens, leaders=leaders, reward_model="fake")


def test_a_stream_commits_to_the_leader_aborts_the_rest_and_streams_its_text_as_it_is_made():
    tokens_at = {}

    def watch(event, gen):
        if isinstance(event, (Commit, Piece)) and not tokens_at:
            tokens_at["first"] = gen.generated_tokens

    gen = judged_generator()
    events = stream(gen, commit=leader(), on_event=watch)
    commit, *pieces, selection = events
    assert isinstance(commit, Commit) and isinstance(selection, Selection)
    assert commit.choices == 1 and commit.at_tokens == 2 and commit.candidates_alive == 3
    assert commit.leader_scores == (len("longword another"),)
    assert all(isinstance(p, Piece) and p.choice == 0 for p in pieces)
    assert "".join(p.text for p in pieces) == TEXTS[1]
    assert len(pieces) > 3  # word by word, not at the end
    assert tokens_at["first"] < 10  # the stream began with about 3 x 2 of the 26 tokens made
    assert gen.aborted == 2 and selection.candidates_pruned == 2
    assert selection.chosen[0].candidate.text == TEXTS[1] and selection.chosen[0].score == len(TEXTS[1])
    assert selection.commit == commit
    assert gen.generated_tokens < sum(len(t.split()) for t in TEXTS)  # the others stopped early


def test_a_finished_candidate_can_lead_and_arrives_whole():
    texts = ["supercalifragilisticexpialidocious", "a b c d e f g", "b c d e f g h"]
    gen = judged_generator(texts)
    commit, *pieces, selection = stream(gen, commit=leader(at_tokens=3))
    assert commit.at_tokens == 3
    assert [p.text for p in pieces] == [texts[0]]
    assert selection.chosen[0].candidate.text == texts[0] and gen.aborted == 2


def test_n_leaders_stream_as_their_own_choices():
    commit, *pieces, selection = stream(judged_generator(), n=2, commit=leader(leaders=2))
    assert commit.choices == 2
    by_choice = ["".join(p.text for p in pieces if p.choice == c) for c in (0, 1)]
    assert by_choice == [TEXTS[1], TEXTS[2]]  # best first, as at the commit
    assert [sc.candidate.text for sc in selection.chosen] == by_choice


def test_with_nothing_to_choose_the_stream_runs_token_by_token_from_the_first_and_judges_nothing():
    gen = FakeGenerator(FakeGeneratorConfig(texts=[TEXTS[0]], seconds_per_token=0.01))  # no judge at all
    commit, *pieces, selection = stream(gen, best_of=1, commit=leader(at_tokens=16))
    assert commit.at_tokens == 0 and commit.leader_scores == ()
    assert [p.text for p in pieces] == ["a"] + [" " + w for w in TEXTS[0].split()[1:]]
    assert selection.chosen[0].candidate.text == TEXTS[0]


def test_select_streams_commit_only_when_there_is_nothing_to_choose():
    events = stream(judged_generator(), commit=CommitPlan(at_tokens=NEVER, leaders=1, reward_model="fake"))
    assert len(events) == 1 and events[0].chosen[0].candidate.text == TEXTS[1]  # one Selection, the buffered way
    events = stream(judged_generator(texts=[TEXTS[0]]), best_of=1,
                    commit=CommitPlan(at_tokens=NEVER, leaders=1, reward_model="fake"))
    assert isinstance(events[0], Commit) and len(events) == 2 + len(TEXTS[0].split())


def test_an_unavailable_judge_leaves_the_choice_to_selection():
    class Away(FakeReward):
        async def score(self, prompt, completions):
            raise Overloaded("scorer gone", code="replica_unavailable")

    gen = judged_generator(reward=Away(FakeRewardConfig()))
    events = stream(gen, commit=leader())
    assert len(events) == 1 and events[0].chosen[0].candidate.text == TEXTS[1] and gen.aborted == 0


def test_the_deadline_cuts_a_committed_leader_short_and_it_is_still_the_answer():
    texts = [" ".join(["word"] * 200), "x"]  # candidate 0 leads and cannot finish in time
    gen = judged_generator(texts, seconds_per_token=0.01)
    commit, *pieces, selection = stream(gen, best_of=2, commit=leader(at_tokens=2), ms=600, max_tokens=200)
    text = "".join(p.text for p in pieces)
    assert 2 < len(text.split()) < 200
    assert selection.chosen[0].candidate.text == text and selection.chosen[0].candidate.finish_reason == "length"
    assert selection.stopped_early


def test_a_partial_competes_with_the_finished_and_calibrated_offsets_temper_it():
    # Candidate 0 finishes at once with a short text; candidate 1 is cut by the deadline with a longer one.
    texts = ["ok then", " ".join(["word"] * 100)]

    def run(offsets):
        gen = FakeGenerator(FakeGeneratorConfig(texts=texts, seconds_per_token=0.02))
        (selection,) = stream(gen, best_of=2, ms=500, max_tokens=100, offsets=offsets)
        return selection.chosen[0].candidate

    cut = run(None)
    assert not cut.finished and cut.text.startswith("word word")  # its reward is higher: it wins, cut as it is
    assert run(PartialOffsets((4, 64), (-1000.0, -1000.0))).text == "ok then"  # a reward that overrates cut texts


def test_offsets_interpolate_and_never_credit_a_partial():
    offsets = PartialOffsets((4, 16, 64), (-2.0, -1.0, 0.5))
    assert [offsets.adjustment(t) for t in (1, 4, 10, 16, 40, 64, 500)] == [-2.0, -2.0, -1.5, -1.0, -0.25, 0.0, 0.0]


def test_a_commit_plan_refuses_nonsense():
    with pytest.raises(ValueError):
        CommitPlan(at_tokens=0, leaders=1, reward_model="fake")


def test_a_stream_that_gets_no_text_by_the_deadline_has_not_begun_and_is_a_504():
    # Committed at once (nothing to choose), but no token by the deadline: no Commit was
    # sent, so the client still gets the 504 a buffered request would, not an empty 200.
    from service.errors import BudgetExhausted

    gen = FakeGenerator(FakeGeneratorConfig(texts=[TEXTS[0]], candidate_delays_s=[5]))
    seen = []
    with pytest.raises(BudgetExhausted):
        stream(gen, best_of=1, commit=leader(), ms=400, on_event=lambda event, _: seen.append(event))
    assert seen == []


def test_a_leaders_deltas_carry_only_new_text_and_join_into_its_whole_text():
    from service.generator.race import Progress

    progress = Progress(prompt_tokens=3)
    progress.update(0, "Once", 1)
    progress.follow({0})
    texts = ["Once upon", "Once upon a", "Once upon a time."]
    pieces = [d.text for d in progress.deltas()]  # the text before the commit comes first, whole
    for tokens, text in enumerate(texts, start=2):
        progress.update(0, text, tokens)
        pieces += [d.text for d in progress.deltas()]
    assert pieces == ["Once", " upon", " a", " time."]
    assert "".join(pieces) == texts[-1]
    progress.update(0, "Once upon a time.", 5)  # nothing new: no Delta at all
    assert progress.deltas() == []


def test_the_bytes_a_leader_stream_sends_across_ray_grow_linearly_with_its_length():
    import pickle

    from service.types import Deadline

    def bytes_crossing(words: int) -> int:
        """Every event the generator yields, pickled as a Ray handle stream sends it."""
        gen = judged_generator(texts=[" ".join(["word"] * words)], seconds_per_token=0.001)

        async def stream_all():
            sent = 0
            async for event in gen.generate(PROMPT, SamplingSpec(max_tokens=words), 1, Deadline.after_ms(20_000),
                                            None, leader()):
                sent += len(pickle.dumps(event))
            return sent

        return asyncio.run(stream_all())

    short, long = bytes_crossing(100), bytes_crossing(400)
    # Four times the text, about four times the bytes (the whole text in every event made it ~16x).
    assert 3 * short < long < 5 * short, (short, long)
