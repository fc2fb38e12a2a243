"""A deterministic reward for tests: longer text scores higher."""

from __future__ import annotations

import asyncio
from typing import Sequence

from service.config import FakeRewardConfig
from service.reward.base import RewardModel
from service.types import Prompt, Scores


class FakeReward(RewardModel):
    kind = "fake"

    def __init__(self, config: FakeRewardConfig):
        self.config = config
        self.calls = 0

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        self.calls += 1
        if self.config.seconds_per_call:
            await asyncio.sleep(self.config.seconds_per_call)
        return Scores([float(len(c)) for c in completions])
