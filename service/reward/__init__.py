"""Reward models: the `RewardModel` interface and its implementations, picked by config."""

from __future__ import annotations

from service.config import FakeRewardConfig, RewardConfig, SlopRewardConfig
from service.reward.base import RewardModel


def make_reward_model(config: RewardConfig) -> RewardModel:
    if isinstance(config, SlopRewardConfig):
        from service.reward.slop import SlopReward

        return SlopReward(config)
    if isinstance(config, FakeRewardConfig):
        from service.reward.fake import FakeReward

        return FakeReward(config)
    raise TypeError(f"unknown reward config {type(config).__name__}")


__all__ = ["RewardModel", "make_reward_model"]
