"""The `ensemble` reward: a weighted sum of other reward models.

Kinds differ in scale (a logit, a slop penalty, a head's margin), so each
member's scores are z-scored over the request's candidates before weighting:
what counts is how a candidate ranks among its siblings under each member. The
components report each member's weighted z-scores; they add up to the score.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Sequence

from service.reward.base import RewardModel
from service.types import Prompt, Scores


def zscores(values: Sequence[float]) -> list[float]:
    if len(values) < 2:
        return [0.0] * len(values)
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    if std == 0:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


class EnsembleReward(RewardModel):
    kind = "ensemble"

    def __init__(self, members: Sequence[tuple[str, RewardModel, float]]):
        self.members = list(members)

    async def score_many(self, batch) -> list[Scores]:
        # Each member scores the whole batch at once (its own batching applies).
        per_member = await asyncio.gather(*(model.score_many(batch) for _, model, _ in self.members))
        out = []
        for job, _ in enumerate(batch):
            count = len(batch[job][1])
            components = {
                name: [round(weight * z, 4) for z in zscores(per_member[m][job].values)]
                for m, (name, _, weight) in enumerate(self.members)
            }
            values = [round(sum(components[name][i] for name, _, _ in self.members), 4) for i in range(count)]
            out.append(Scores(values, components))
        return out

    async def score(self, prompt: Prompt, completions: Sequence[str], max_tokens: int | None = None) -> Scores:
        return (await self.score_many([(prompt, completions, max_tokens)]))[0]
