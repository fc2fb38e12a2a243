"""Reward models: the `RewardModel` interface and its implementations, picked by config."""

from __future__ import annotations

from typing import Mapping

from service.config import (
    EmbeddingHeadRewardConfig,
    EnsembleRewardConfig,
    FakeRewardConfig,
    RemoteRewardConfig,
    RewardConfig,
    SequenceClassifierRewardConfig,
    SlopRewardConfig,
)
from service.reward.base import RewardModel


def make_reward_model(config: RewardConfig, encoders=None) -> RewardModel:
    """One reward model; imports only what its kind needs. Embedding heads given the same
    `encoders` pool share their encoder (see service.reward.encoder.EncoderPool)."""
    if isinstance(config, SlopRewardConfig):
        from service.reward.slop import SlopReward

        return SlopReward(config)
    if isinstance(config, EmbeddingHeadRewardConfig):
        from service.reward.embedding_head import EmbeddingHeadReward

        return EmbeddingHeadReward(config, encoders)
    if isinstance(config, SequenceClassifierRewardConfig):
        from service.reward.sequence_classifier import SequenceClassifierReward

        return SequenceClassifierReward(config)
    if isinstance(config, RemoteRewardConfig):
        from service.reward.remote import RemoteReward

        return RemoteReward(config)
    if isinstance(config, FakeRewardConfig):
        from service.reward.fake import FakeReward

        return FakeReward(config)
    raise TypeError(f"{type(config).__name__} is not built alone (ensembles need make_reward_models)")


def make_reward_models(configs: Mapping[str, RewardConfig], encoders=None) -> dict[str, RewardModel]:
    """Every configured model by name; ensembles share their members' instances, and
    models that read one encoder share it (the process's pool unless `encoders` is given)."""
    from service.reward.encoder import ENCODERS
    from service.reward.ensemble import EnsembleReward

    encoders = encoders or ENCODERS
    models = {name: make_reward_model(c, encoders) for name, c in configs.items()
              if not isinstance(c, EnsembleRewardConfig)}
    for name, config in configs.items():
        if isinstance(config, EnsembleRewardConfig):
            members = [(m.name, models[m.name], m.weight) for m in config.members]
            stats = {m.name: (m.mean, m.std) for m in config.members if m.mean is not None}
            models[name] = EnsembleReward(members, scale=config.scale, stats=stats)
    return models


__all__ = ["RewardModel", "make_reward_model", "make_reward_models"]
