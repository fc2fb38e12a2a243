"""Partial texts judged fairly against finished ones.

When the deadline cuts candidates short, and when a stream commits to a leader,
texts cut at some token count compete with texts that finished. A reward model
reads a cut text as if it were whole, and may rate it higher than the finished
text it would have become (a style head that likes short texts cannot tell
truncation from brevity). `loadtests/calibrate_commit` measures this per reward
model: at k tokens, the mean of (reward of the finished text - reward of its
first k tokens), both scored in one call. Where that is negative the model
overrates cut texts by that much, and it is taken off a partial's reward before
it competes. A partial is never credited with more than it reads: a cut text is
what the client would get, so positive offsets count as zero.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from service.config import PartialOffsetsConfig


@dataclass(frozen=True)
class Curve:
    """Values measured at some token counts: linear between them, flat beyond."""

    tokens: tuple[int, ...]  # increasing
    values: tuple[float, ...]

    def at(self, tokens: int) -> float:
        i = bisect.bisect_left(self.tokens, tokens)
        if i == 0:
            return self.values[0]
        if i == len(self.tokens):
            return self.values[-1]
        (t0, t1), (v0, v1) = self.tokens[i - 1 : i + 1], self.values[i - 1 : i + 1]
        return v0 + (v1 - v0) * (tokens - t0) / (t1 - t0)


@dataclass(frozen=True)
class PartialOffsets:
    tokens: tuple[int, ...]  # increasing
    offsets: tuple[float, ...]  # measured at each of `tokens`

    @classmethod
    def of(cls, config: PartialOffsetsConfig | None) -> "PartialOffsets | None":
        return None if config is None else cls(tuple(config.tokens), tuple(config.offsets))

    def adjustment(self, tokens: int) -> float:
        """What to add to the reward of a text cut at `tokens` tokens (never positive):
        interpolated between the measured points, flat beyond them."""
        return min(Curve(self.tokens, self.offsets).at(tokens), 0.0)


def adjustment(offsets: PartialOffsets | None, finished: bool, tokens: int) -> float:
    """The adjustment to a candidate's reward for ranking: none for a finished text."""
    return 0.0 if finished or offsets is None else offsets.adjustment(tokens)
