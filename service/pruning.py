"""Early pruning (speculative rejection): drop the candidates that start badly.

At each checkpoint, once every running candidate has that many tokens, their
partial texts are scored with the request's reward model and the lowest-scoring
`fraction` is aborted in the engine; the compute they would have used goes to
the survivors and to other requests. The generator runs the schedule (it owns
the candidates); this module decides who goes.

A request's `PruningPlan` is plain data, so it crosses to the generator's
process as it is; the generator scores partial texts with the `RewardCatalog`
it was given when it was built (its judge): in one process the reward models
themselves, in the Ray app the scorer deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from service.errors import APIError
from service.ranking import Ranking
from service.reward.catalog import RewardCatalog
from service.types import Prompt, check_checkpoints

# Given the partial texts of the running candidates (index -> text) and how many
# candidates already finished, the indexes to abort.
ChooseVictims = Callable[[dict[int, str], int], Awaitable[list[int]]]


@dataclass(frozen=True)
class PruningPlan:
    """When every running candidate has `checkpoints[k]` tokens, score their
    partial texts with `reward_model` and abort the lowest-ranked `fraction` of them;
    then the same at the next checkpoint. Finished plus running candidates never
    drop below `floor`."""

    checkpoints: tuple[int, ...]
    fraction: float
    floor: int
    reward_model: str  # a name: the judge holds the model
    # Texts still growing (no JSON check); all cut at about one length, so no offsets either.
    ranking: Ranking = Ranking()

    def __post_init__(self):
        check_checkpoints(self.checkpoints)
        if not 0 < self.fraction < 1:
            raise ValueError("fraction must be between 0 and 1")
        if self.floor < 1:
            raise ValueError("floor must be at least 1")

    def chooser(self, judge: RewardCatalog | None, prompt: Prompt) -> ChooseVictims:
        if judge is None:
            raise RuntimeError("this generator was built without a judge: it cannot prune")

        async def choose(partials: dict[int, str], finished: int) -> list[int]:
            count = victim_count(len(partials), finished, self.fraction, self.floor)
            if count == 0:
                return []
            order = sorted(partials)
            try:
                reward = (await judge.current()).get(self.reward_model)
                scores = await reward.score(prompt, [partials[i] for i in order])
            except APIError as exc:
                if not exc.unavailable:
                    raise
                return []  # a judge that is unavailable prunes nobody: the request goes on whole
            # The last of the ranking go: the degenerate, the lowest reward, among equals the later candidate.
            score = dict(zip(order, scores.values))
            ranked = sorted(order, key=lambda i: self.ranking.key(i, partials[i], score[i]))
            return ranked[::-1][:count]

        return choose


def victim_count(running: int, finished: int, fraction: float, floor: int) -> int:
    """How many of the running candidates to abort at a checkpoint."""
    room = running + finished - floor
    return max(0, min(int(running * fraction), room))
