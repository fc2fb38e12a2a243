"""The `ensemble` reward: a weighted sum of other reward models.

Kinds differ in scale (a logit, a slop penalty, a head's margin), so each
member's raw score is standardised before weighting. By default (`scale:
reference`) with the member's mean and standard deviation on a reference corpus,
given in the config or measured once at start: a text's score then depends on the
text alone, so a pair, a batch of 16 and the micro-batches of anytime selection
rank the same texts the same way, and two members that disagree on a pair do not
simply cancel out (with two candidates, per-request z-scores are always +-1: a
vote that ties whenever the members disagree). `scale: request` keeps the older
z-scores over each request's candidates; those scores carry their `ZScoreSum`, so
when a request is scored in several calls `concat` recomputes them over all.
The components report each member's raw score.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

from service.reward.base import RewardModel
from service.types import Prompt, Scores

log = logging.getLogger(__name__)
# Reference texts scored once at start for members without pinned statistics.
REFERENCE_TEXTS = 240


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


@dataclass(frozen=True)
class Standardised:
    """value = sum over members of weight * (raw - mean) / std, with fixed statistics."""

    weights: Mapping[str, float]
    stats: Mapping[str, tuple[float, float]]  # name -> (mean, std)

    def combine(self, components: Mapping[str, list[float]]) -> list[float]:
        count = len(next(iter(components.values()), []))
        return [round(sum(weight * (components[name][i] - self.stats[name][0]) / self.stats[name][1]
                          for name, weight in self.weights.items()), 4) for i in range(count)]


def reference_batch(count: int = REFERENCE_TEXTS) -> list[tuple[Prompt, list[str]]]:
    """The shipped preference texts, good and bad alike, each with its prompt."""
    from service.reward.pairs import SHIPPED_PAIRS, read_pairs

    pairs = read_pairs(SHIPPED_PAIRS)[: count // 2]
    return [(Prompt(text=p.prompt), [p.chosen, p.rejected]) for p in pairs]


async def measure_stats(model: RewardModel, batch: list[tuple[Prompt, list[str]]]) -> tuple[float, float]:
    """A member's mean and standard deviation over the reference texts."""
    values = [v for scores in await model.score_many(batch) for v in scores.values]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return round(mean, 4), round(max(std, 1e-6), 4)


class EnsembleReward(RewardModel):
    kind = "ensemble"

    def __init__(self, members: Sequence[tuple[str, RewardModel, float]], scale: str = "request",
                 stats: Mapping[str, tuple[float, float]] | None = None):
        self.members = list(members)
        self.weights = {name: weight for name, _, weight in self.members}
        self.scale, self.stats = scale, dict(stats or {})
        self.measuring = asyncio.Lock()
        self.combiner: ZScoreSum | Standardised = ZScoreSum(self.weights)
        if scale == "reference" and len(self.stats) == len(self.members):
            self.combiner = Standardised(self.weights, self.stats)

    async def start(self) -> None:
        if self.scale != "reference" or isinstance(self.combiner, Standardised):
            return
        async with self.measuring:  # concurrent first calls measure once
            if isinstance(self.combiner, Standardised):
                return
            batch = reference_batch()
            for name, model, _ in self.members:
                if name not in self.stats:
                    self.stats[name] = await measure_stats(model, batch)
                    log.info("ensemble member %s: mean %.4f, std %.4f on %d reference texts (pin them in the "
                             "config to skip this)", name, *self.stats[name], 2 * len(batch))
            self.combiner = Standardised(self.weights, self.stats)

    async def score_many(self, batch: Sequence[tuple[Prompt, Sequence[str]]]) -> list[Scores]:
        await self.start()
        # Each member scores the whole batch at once (its own batching applies).
        per_member = await asyncio.gather(*(model.score_many(batch) for _, model, _ in self.members))
        out = []
        for job in range(len(batch)):
            components = {name: list(per_member[m][job].values) for m, (name, _, _) in enumerate(self.members)}
            # Standardised values are the text's own: concatenating calls needs no recombining.
            combiner = self.combiner if isinstance(self.combiner, ZScoreSum) else None
            out.append(Scores(self.combiner.combine(components), components, combiner))
        return out

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        return (await self.score_many([(prompt, completions)]))[0]
