"""The `ensemble` reward: a weighted sum of other reward models.

Kinds differ in scale (a logit, a slop penalty, a head's margin), so each
member's scores are z-scored over the request's candidates before weighting:
what counts is how a candidate ranks among its siblings under each member. The
components report each member's raw score; the value is sum(weight * z). The
scores carry their `ZScoreSum`, so when a request's candidates are scored in
several calls (anytime selection), `concat` recomputes the z-scores over all of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Mapping, Sequence

from service.reward.base import RewardModel
from service.types import Prompt, Scores


def zscores(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [0.0] * len(values)
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    if std == 0:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


@dataclass(frozen=True)
class ZScoreSum:
    """value = sum over members of weight * z-score of the member's raw score,
    z-scored over the completions scored together."""

    weights: Mapping[str, float]

    def combine(self, components: Mapping[str, list[float]]) -> list[float]:
        count = len(next(iter(components.values()), []))
        z = {name: zscores(list(components[name])) for name in self.weights}
        return [round(sum(weight * z[name][i] for name, weight in self.weights.items()), 4) for i in range(count)]


class EnsembleReward(RewardModel):
    kind = "ensemble"

    def __init__(self, members: Sequence[tuple[str, RewardModel, float]]):
        self.members = list(members)
        self.combiner = ZScoreSum({name: weight for name, _, weight in self.members})

    async def score_many(self, batch: Sequence[tuple[Prompt, Sequence[str]]]) -> list[Scores]:
        # Each member scores the whole batch at once (its own batching applies).
        per_member = await asyncio.gather(*(model.score_many(batch) for _, model, _ in self.members))
        out = []
        for job in range(len(batch)):
            components = {name: list(per_member[m][job].values) for m, (name, _, _) in enumerate(self.members)}
            out.append(Scores(self.combiner.combine(components), components, self.combiner))
        return out

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        return (await self.score_many([(prompt, completions)]))[0]
