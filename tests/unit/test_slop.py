"""The slop reward prefers plain, specific prose over the tells of machine writing."""

import asyncio
from dataclasses import replace

import pytest

from service.reward.slop import WEIGHTS, SlopReward
from service.types import Prompt

ASK = Prompt(text="How do I keep bread fresh?")
PLAIN = "Keep it in a paper bag on the counter for two days, then slice it and freeze it."


def score(text, prompt=ASK, max_tokens=128):
    return SlopReward().score_texts(replace(prompt, max_tokens=max_tokens), [text]).values[0]


@pytest.mark.parametrize(
    "worse",
    [
        "Great question! " + PLAIN,
        PLAIN + " I hope this helps! Let me know if you have any other questions.",
        "It's worth noting that, generally speaking, you might perhaps " + PLAIN[0].lower() + PLAIN[1:],
        "Keeping bread fresh is not just about storage, but about embarking on a journey to "
        "unlock the rich tapestry of baking. " + PLAIN,
        "- Keep it in a bag\n- Keep it on the counter\n- Firstly, slice it\n- Lastly, freeze it",
        "",
    ],
    ids=["sycophantic-opener", "service-closer", "hedging", "slop-and-not-x-but-y", "list-padding", "empty"],
)
def test_slop_scores_below_the_plain_answer(worse):
    assert score(worse) < score(PLAIN)


def test_the_empty_answer_is_worst():
    assert score("") < score("Great question! It's worth noting that it depends.")


def test_verbosity_counts_against_a_request_for_brevity():
    brief = Prompt(text="Briefly: how do I keep bread fresh?")
    padded = " ".join([PLAIN] * 6)
    assert score(padded, brief) < score(PLAIN, brief)
    assert SlopReward().score_texts(replace(brief, max_tokens=128), [padded]).components["verbosity"][0] < 0


def test_a_long_answer_is_not_punished_when_the_request_allows_it():
    long_plain = " ".join([PLAIN] * 3)  # ~57 words, within 0.75 * 256 tokens
    assert SlopReward().score_texts(replace(ASK, max_tokens=256), [long_plain]).components["verbosity"][0] == 0


def test_not_x_but_y_is_detected():
    comps = SlopReward().score_texts(replace(ASK, max_tokens=64), ["It's not a recipe, it's a ritual.", PLAIN]).components
    assert comps["not_x_but_y"][0] < 0 and comps["not_x_but_y"][1] == 0


def test_repetition_loops_are_penalised():
    loop = "the bread is good and " * 12
    assert SlopReward().score_texts(replace(ASK, max_tokens=128), [loop]).components["repetition"][0] < -1


def test_components_add_up_to_the_score_and_cover_every_text():
    texts = [PLAIN, "Great question! Perhaps.", ""]
    scores = asyncio.run(SlopReward().score(replace(ASK, max_tokens=64), texts))
    assert set(scores.components) == set(WEIGHTS)
    for i in range(len(texts)):
        assert sum(scores.components[name][i] for name in WEIGHTS) == pytest.approx(scores.values[i], abs=1e-3)


@pytest.mark.parametrize("literal, cliche", [
    ("The tin miners would delve by candlelight into a lode of cassiterite.",
     "Let us delve into the history of Cornwall and its people."),
    ("The Bayeux tapestry is a woven linen cloth, embroidered in wool, 70 metres long.",
     "Cornwall's history is a tapestry of mining, fishing and religion."),
    ("Use robust standard errors when the regression's residuals are heteroskedastic.",
     "Use a robust approach when the data looks strange."),
])
def test_a_listed_word_in_its_literal_sense_is_not_slop(literal, cliche):
    reward = SlopReward()
    scores = reward.score_texts(ASK, [literal, cliche])
    assert scores.components["slop_phrases"][0] == 0
    assert scores.components["slop_phrases"][1] < 0


@pytest.mark.parametrize("padded", [
    "## Keeping bread\n" + PLAIN,
    "**Short answer:** " + PLAIN,
    PLAIN + "\nConclusion: paper bag, then freezer.",
    PLAIN + "\nTL;DR: bag, then freeze.",
])
def test_markdown_scaffolding_in_a_short_answer_is_padding(padded):
    scores = SlopReward().score_texts(ASK, [PLAIN, padded])
    assert scores.components["scaffolding"] == [0.0, pytest.approx(-WEIGHTS["scaffolding"])]
    assert scores.values[0] > scores.values[1]


@pytest.mark.parametrize("flattered", [
    "What a lovely prompt! " + PLAIN,
    "Good question — " + PLAIN,
    "Love the idea! " + PLAIN,
    "Smart to ask before it goes stale! " + PLAIN,
    PLAIN + " Happy baking!",
    PLAIN + " Hope that helps!",
])
def test_mild_openers_and_closers_are_caught_in_their_common_forms(flattered):
    scores = SlopReward().score_texts(ASK, [PLAIN, flattered])
    assert scores.components["sycophancy"] == [0.0, -WEIGHTS["sycophancy"]]


@pytest.mark.parametrize("max_tokens, past_the_request", [(16, True), (64, True), (512, False)])
def test_verbosity_does_not_reward_shortness_between_texts_of_equal_length(max_tokens, past_the_request):
    # Expert edits usually shorten a text; on pairs of equal length, verbosity must not take a side.
    one = " ".join([PLAIN] * 4)
    other = " ".join(["Wrap the loaf in a clean cotton towel and keep it in a bread box for three days."] * 4)
    assert len(one.split()) == len(other.split())
    verbosity = SlopReward().score_texts(replace(ASK, max_tokens=max_tokens), [one, other]).components["verbosity"]
    assert verbosity[0] == verbosity[1]
    assert (verbosity[0] < 0) == past_the_request  # and it still counts against an answer past the request
