"""Leader-commit streaming: a best-of-N stream that starts early.

A stream cannot show text before it knows which candidate it shows. Waiting for
selection makes the first byte as late as the last (a best-of-8 stream of 128
tokens showed nothing for its whole 5-10 s). Instead, when every running
candidate has `at_tokens` tokens, their partial texts (and any finished ones)
are judged in one reward call; the best `leaders` (the request's n) become the
leaders, every other candidate is aborted in the engine, and the leaders' text
is streamed from then on as the engine makes it. With no more candidates than
choices there is nothing to choose: the stream commits at once and runs token by
token from the first.

How early is early enough is measured by `loadtests/calibrate_commit` (how often
the leader at k tokens is the full best-of-N winner, and what committing costs
in reward); the configured commit point comes from there. Like pruning, the
generator runs this (it owns the candidates); this module decides who leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from service.errors import APIError
from service.ranking import Ranking
from service.reward.catalog import RewardCatalog
from service.types import Prompt

# Given the running candidates' partial texts (index -> (text, tokens)) and the
# finished ones' texts (index -> text): the leaders, best first, and their
# rewards; None when no judgement could be had (the stream then goes on unjudged).
ChooseLeaders = Callable[[dict[int, tuple[str, int]], dict[int, str]], Awaitable[tuple[list[int], list[float]] | None]]

# The commit point of `select` streams: never reached, so they commit only when
# there is nothing to choose (no more candidates than choices).
NEVER = 2**31


@dataclass(frozen=True)
class CommitPlan:
    """At `at_tokens`, keep the `leaders` best candidates by `reward_model` (a name: the
    judge holds the model), ranked by `ranking`, and stream them; plain data, so it
    crosses to the generator's process as it is."""

    at_tokens: int
    leaders: int
    reward_model: str
    ranking: Ranking = Ranking()  # texts still growing: no JSON check

    def __post_init__(self):
        if self.at_tokens < 1 or self.leaders < 1:
            raise ValueError("at_tokens and leaders must be at least 1")

    def chooser(self, judge: RewardCatalog | None, prompt: Prompt) -> ChooseLeaders:
        if judge is None:
            raise RuntimeError("this generator was built without a judge: it cannot choose leaders")

        async def choose(running: dict[int, tuple[str, int]], finished: dict[int, str]):
            field = [(i, text, tokens, False) for i, (text, tokens) in sorted(running.items())]
            field += [(i, text, 0, True) for i, text in sorted(finished.items())]
            try:
                reward = (await judge.current()).get(self.reward_model)
                scores = (await reward.score(prompt, [text for _, text, _, _ in field])).values
            except APIError as exc:
                if not exc.unavailable:
                    raise
                return None  # the judge is away: no commit; selection decides at the end, as buffered
            ranked = sorted(zip(field, scores), key=lambda entry: self.ranking.key(
                entry[0][0], entry[0][1], entry[1], finished=entry[0][3], tokens=entry[0][2]))[: self.leaders]
            return [entry[0][0] for entry in ranked], [float(entry[1]) for entry in ranked]

        return choose
