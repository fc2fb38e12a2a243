"""Early pruning (speculative rejection): drop the candidates that start badly.

At each checkpoint, once every running candidate has that many tokens, their
partial texts are scored with the request's reward model and the lowest-scoring
`fraction` is aborted in the engine; the compute they would have used goes to
the survivors and to other requests. The generator runs the schedule (it owns
the candidates); this module decides who goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from service.reward.base import RewardModel
from service.types import Prompt, PruningSpec

# Given the partial texts of the running candidates (index -> text) and how many
# candidates already finished, the indexes to abort.
ChooseVictims = Callable[[dict[int, str], int], Awaitable[list[int]]]


@dataclass(frozen=True)
class Pruning:
    spec: PruningSpec
    keep_at_least: int  # finished plus running candidates never drop below this
    reward_model: str  # its name, so that another process can score with it too
    reward: RewardModel | None = None  # None only on the way to another process

    def chooser(self, prompt: Prompt, max_tokens: int) -> ChooseVictims:
        async def choose(partials: dict[int, str], finished: int) -> list[int]:
            count = victim_count(len(partials), finished, self.spec.fraction, self.keep_at_least)
            if count == 0:
                return []
            order = sorted(partials)
            scores = await self.reward.score(prompt, [partials[i] for i in order], max_tokens)
            # Lowest reward goes first; among equals the later candidate goes first.
            ranked = sorted(zip(scores.values, order), key=lambda pair: (pair[0], -pair[1]))
            return [i for _, i in ranked[:count]]

        return choose


def victim_count(running: int, finished: int, fraction: float, keep_at_least: int) -> int:
    """How many of the running candidates to abort at a checkpoint."""
    room = running + finished - keep_at_least
    return max(0, min(int(running * fraction), room))
