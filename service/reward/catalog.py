"""Which reward models are configured right now, and which is the default.

The scorer's reward models can be swapped while the service runs (its Ray
Serve `user_config`), so the API asks a catalog instead of holding a fixed dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from service.reward.base import RewardModel


@dataclass(frozen=True)
class RewardSet:
    models: Mapping[str, RewardModel]
    default: str


class RewardCatalog(Protocol):
    async def current(self) -> RewardSet: ...


class StaticCatalog:
    """A fixed set: tests, and anything that runs without Ray."""

    def __init__(self, models: Mapping[str, RewardModel], default: str):
        self.rewards = RewardSet(dict(models), default)

    async def current(self) -> RewardSet:
        return self.rewards
