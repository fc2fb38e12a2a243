"""Early pruning (speculative rejection): drop the candidates that start badly.

At each checkpoint, once the running candidates have that many tokens, their
partial texts are scored with the request's reward model and the ones that go
are aborted in the engine; the compute they would have used goes to the
survivors and to other requests. Two rules decide who goes:

- `fraction`: the lowest-scoring share of the running candidates, at a few
  fixed checkpoints;
- `confidence`: every candidate whose reward trails the leader's by more than
  `confidence` times the reward model's measured noise at that length
  (`Curve`, loadtests/calibrate_pruning): only one that could still win goes on.
  It prunes hard where the judge separates the candidates and waits where it
  cannot, at checkpoints every few tokens.

Adaptive N (`first_wave`): a confidence plan may start only some candidates and,
at the first checkpoint, draw the rest of best_of only where the first ones'
rewards spread: where they agree, more samples are unlikely to find a better text.

The generator runs the schedule (it owns the candidates); this module decides
who goes and whether more come. A request's `PruningPlan` is plain data, so it
crosses to the generator's process as it is; the generator scores partial texts
with the `RewardCatalog` it was given when it was built (its judge): in one
process the reward models themselves, in the Ray app the scorer deployment.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Awaitable, Callable, NamedTuple

from service.errors import APIError
from service.partials import Curve
from service.ranking import Ranking
from service.reward.catalog import RewardCatalog
from service.types import Prompt, check_checkpoints


class Verdict(NamedTuple):
    """What a checkpoint decided: the candidates to abort, how many new ones to start and,
    with adaptive N, how many of best_of are never sampled; when branching, the
    candidates whose text so far new ones continue (one entry per new candidate)."""

    victims: list[int]
    draw: int = 0
    unsampled: int = 0
    branch_from: tuple[int, ...] = ()


@dataclass(frozen=True)
class Branching:
    """At `at` tokens keep the `leaders` best candidates, abort the rest, and start
    `per_leader` new candidates continuing each leader's text so far with new seeds
    (TreeBoN-style; loadtests/measure_branching)."""

    at: int
    leaders: int = 2
    per_leader: int = 2

    def __post_init__(self):
        if self.at < 1 or self.leaders < 1 or self.per_leader < 1:
            raise ValueError("branching needs at, leaders and per_leader of at least 1")


# Given the checkpoint, the partial texts of the candidates judged there (index -> text)
# and how many other candidates still count (finished, or running towards another
# checkpoint), the verdict.
ChooseVictims = Callable[[int, dict[int, str], int], Awaitable[Verdict]]


@dataclass(frozen=True)
class PruningPlan:
    """When the running candidates have `checkpoints[k]` tokens, score their partial
    texts with `reward_model` and abort the ones the rule gives up on (`fraction`:
    the lowest-ranked share; `confidence` with `noise`: those that can no longer
    win); then the same at the next checkpoint. Finished plus running candidates
    never drop below `floor`. With `first_wave`, only that many of the request's
    candidates start; the rest are drawn at the first checkpoint if the first ones'
    rewards spread by more than `grow_at` noise spreads."""

    checkpoints: tuple[int, ...]
    fraction: float | None
    floor: int
    reward_model: str  # a name: the judge holds the model
    # Texts still growing (no JSON check); all cut at about one length, so no offsets either.
    ranking: Ranking = Ranking()
    confidence: float | None = None
    noise: Curve | None = None
    first_wave: int | None = None
    grow_at: float = 0.0
    branch: Branching | None = None  # the branch rule: its one checkpoint is branch.at

    def __post_init__(self):
        check_checkpoints(self.checkpoints)
        if sum(rule is not None for rule in (self.fraction, self.confidence, self.branch)) != 1:
            raise ValueError("a pruning plan has one rule: fraction, confidence with noise, or branch")
        if self.branch is not None and self.checkpoints != (self.branch.at,):
            raise ValueError("the branch rule judges at one checkpoint: branch.at")
        if self.fraction is not None and not 0 < self.fraction < 1:
            raise ValueError("fraction must be between 0 and 1")
        if self.confidence is not None and (self.confidence <= 0 or self.noise is None):
            raise ValueError("confidence must be positive and come with the reward model's noise")
        if self.floor < 1:
            raise ValueError("floor must be at least 1")
        if self.first_wave is not None and (self.first_wave < 1 or self.confidence is None):
            raise ValueError("first_wave is at least 1 and goes with the confidence rule")

    def starting(self, n: int) -> int:
        """How many of n candidates start at once."""
        return n if self.first_wave is None else min(n, max(self.first_wave, self.floor))

    def chooser(self, judge: RewardCatalog | None, prompt: Prompt, n: int) -> ChooseVictims:
        if judge is None:
            raise RuntimeError("this generator was built without a judge: it cannot prune")
        started = self.starting(n)
        best_seen: dict[int, float] = {}  # checkpoint -> best reward there so far (earlier waves count)

        async def choose(at: int, partials: dict[int, str], others: int) -> Verdict:
            nonlocal started
            drawing = started < n and at == self.checkpoints[0]
            if self.fraction is not None and victim_count(len(partials), others, self.fraction, self.floor) == 0:
                return Verdict([])
            order = sorted(partials)
            try:
                reward = (await judge.current()).get(self.reward_model)
                scores = await reward.score(prompt, [partials[i] for i in order])
            except APIError as exc:
                if not exc.unavailable:
                    raise
                # A judge that is unavailable prunes nobody: the request goes on whole, every candidate drawn.
                draw, started = (n - started, n) if drawing else (0, started)
                return Verdict([], draw)
            # Best first: the degenerate last, then the lower reward, among equals the later candidate.
            score = dict(zip(order, scores.values))
            ranked = sorted(order, key=lambda i: self.ranking.key(i, partials[i], score[i]))
            if self.branch is not None:
                sound = [i for i in ranked if not self.ranking.is_degenerate(partials[i])]
                return self.branching(ranked, sound, len(partials) + others)
            if self.fraction is not None:
                return Verdict(ranked[::-1][:victim_count(len(partials), others, self.fraction, self.floor)])
            judged = [(i, score[i], self.ranking.is_degenerate(partials[i])) for i in ranked]
            noise = self.noise.at(at)
            draw = unsampled = 0
            if drawing:  # adaptive N: the rest of best_of only where the first wave disagrees
                draw = n - started if spread(judged) > self.grow_at * noise else 0
                unsampled, started = n - started - draw, n
            room = len(partials) + others + draw - self.floor
            victims = confident_victims(judged, noise, self.confidence, room, best_seen.get(at))
            best_seen[at] = max([best_seen.get(at, float("-inf"))] + [s for _, s, bad in judged if not bad])
            return Verdict(victims, draw, unsampled)

        return choose

    def branching(self, ranked: list[int], sound: list[int], alive: int) -> Verdict:
        """The branch rule's verdict: the best `leaders` of the sound (not degenerate)
        candidates stay and are continued, the rest go (the worst first, never below the floor)."""
        leaders = sound[: self.branch.leaders]
        if not leaders:  # nothing worth continuing: nobody goes, nothing branches
            return Verdict([])
        branch_from = tuple(i for i in leaders for _ in range(self.branch.per_leader))
        room = alive + len(branch_from) - self.floor
        return Verdict([i for i in ranked[::-1] if i not in leaders][: max(room, 0)], branch_from=branch_from)


def spread(judged: list[tuple[int, float, bool]]) -> float:
    """How far the candidates' rewards disagree: their standard deviation (the degenerate left out)."""
    scores = [s for _, s, degenerate in judged if not degenerate]
    return statistics.pstdev(scores) if len(scores) > 1 else 0.0


def victim_count(running: int, finished: int, fraction: float, floor: int) -> int:
    """How many of the running candidates to abort at a checkpoint."""
    room = running + finished - floor
    return max(0, min(int(running * fraction), room))


def confident_victims(ranked: list[tuple[int, float, bool]], noise: float, confidence: float, room: int,
                      best_seen: float | None = None) -> list[int]:
    """Speculative rejection by confidence: the candidates that can no longer win.

    `ranked` holds the running candidates best first (service.ranking), each as
    (index, reward of its text so far, degenerate). `noise` is how uncertain, at
    this length, a partial text's reward leaves its final one, in units of partial
    reward (loadtests/calibrate_pruning measures it). A candidate stays while its reward is
    within `confidence` x `noise` of the leader's: it could still overtake it. The
    others go, the worst first, as many as `room` allows; a degenerate text goes whatever it scored.
    `best_seen`: the best reward at this length of candidates judged before (an earlier wave).
    """
    leader = next((score for _, score, degenerate in ranked if not degenerate), None)
    if best_seen is not None and leader is not None:
        leader = max(leader, best_seen)
    doomed = [i for i, score, degenerate in ranked
              if degenerate or leader is None or score < leader - confidence * noise]
    if leader is None:
        doomed = doomed[1:]  # all degenerate: the first in the ranking stays
    return doomed[::-1][: max(room, 0)]
