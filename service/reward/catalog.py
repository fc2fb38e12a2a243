"""Which reward models are configured right now, and which is the default.

The scorer's reward models can be swapped while the service runs (its Ray
Serve `user_config`), so the API asks a catalog instead of holding a fixed dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from service.errors import NotFound
from service.reward.base import RewardModel


@dataclass(frozen=True)
class RewardSet:
    models: Mapping[str, RewardModel]
    default: str

    def resolve(self, name: str | None) -> str:
        """The configured name a request means (the default for None); 404 naming
        reward_model for any other: clients never name a path or a kind."""
        name = name or self.default
        if name not in self.models:
            raise NotFound(
                f"reward_model {name!r} is not configured; configured: {', '.join(sorted(self.models))}",
                param="reward_model",
                code="reward_model_not_found",
            )
        return name

    def get(self, name: str | None) -> RewardModel:
        return self.models[self.resolve(name)]


class RewardCatalog(Protocol):
    async def current(self) -> RewardSet: ...


class StaticCatalog:
    """A fixed set: tests, and anything that runs without Ray."""

    def __init__(self, models: Mapping[str, RewardModel], default: str):
        self.rewards = RewardSet(dict(models), default)

    async def current(self) -> RewardSet:
        return self.rewards
