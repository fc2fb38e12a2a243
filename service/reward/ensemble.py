"""The `ensemble` reward: a weighted sum of other reward models.

Kinds differ in scale (a logit, a slop penalty, a head's margin), so each
member's scores are z-scored over the request's candidates before weighting:
what counts is how a candidate ranks among its siblings under each member. The
components report each member's raw score; the value is sum(weight * z). When a
request's candidates are scored in several calls (anytime selection),
`merge_scores` recomputes the z-scores over all of them.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from service.reward.base import RewardModel
from service.types import Prompt, Scores, weighted_zsum


class EnsembleReward(RewardModel):
    kind = "ensemble"

    def __init__(self, members: Sequence[tuple[str, RewardModel, float]]):
        self.members = list(members)

    async def score_many(self, batch) -> list[Scores]:
        # Each member scores the whole batch at once (its own batching applies).
        per_member = await asyncio.gather(*(model.score_many(batch) for _, model, _ in self.members))
        weights = {name: weight for name, _, weight in self.members}
        out = []
        for job in range(len(batch)):
            components = {name: list(per_member[m][job].values) for m, (name, _, _) in enumerate(self.members)}
            out.append(Scores(weighted_zsum(components, weights), components, weights))
        return out

    async def score(self, prompt: Prompt, completions: Sequence[str], max_tokens: int | None = None) -> Scores:
        return (await self.score_many([(prompt, completions, max_tokens)]))[0]
