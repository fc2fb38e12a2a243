"""Plain value types shared by the generator, the reward models and selection."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Prompt:
    """A completion prompt (`text`) or a chat conversation (`messages`), never both."""

    text: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None

    def __post_init__(self):
        if (self.text is None) == (self.messages is None):
            raise ValueError("a Prompt has either text or messages")

    def last_user_text(self) -> str:
        """What the user asked: the prompt text or the last user message."""
        if self.text is not None:
            return self.text
        for m in reversed(self.messages or ()):
            if m["role"] == "user":
                return m["content"]
        return ""


@dataclass(frozen=True)
class SamplingSpec:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Candidate:
    """One sampled completion. `finished` is False when the deadline cut it short."""

    index: int
    text: str
    finish_reason: str
    completion_tokens: int
    finished: bool = True
    prompt_tokens: int = 0  # the same for every candidate of a request
    pruned: bool = False  # aborted at a pruning checkpoint for scoring low


def check_checkpoints(checkpoints):
    """Pruning checkpoints are increasing token counts, from 1 up."""
    if not checkpoints or list(checkpoints) != sorted(set(checkpoints)) or checkpoints[0] < 1:
        raise ValueError("checkpoints must be increasing token counts >= 1")
    return checkpoints


@dataclass(frozen=True)
class PruningSpec:
    """Early pruning (speculative rejection): when every running candidate has
    `checkpoints[k]` tokens, score their partial texts and abort the lowest
    `fraction` of them; then the same at the next checkpoint."""

    checkpoints: tuple[int, ...]
    fraction: float

    def __post_init__(self):
        check_checkpoints(self.checkpoints)
        if not 0 < self.fraction < 1:
            raise ValueError("fraction must be between 0 and 1")


@dataclass(frozen=True)
class Scores:
    """Rewards for a batch of completions, one value per completion, higher is better.

    `components` optionally breaks each value down (name -> one value per completion).
    `weights`, when set, says the values are relative to the completions scored
    together: value = sum of weight * z-score(component) over them (an ensemble).
    Scores of one request's completions that arrive in several calls are then
    merged with `merge_scores`, which recomputes the values over all of them.
    """

    values: list[float]
    components: Mapping[str, list[float]] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)


def zscores(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [0.0] * len(values)
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    if std == 0:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


def weighted_zsum(components: Mapping[str, list[float]], weights: Mapping[str, float]) -> list[float]:
    count = len(next(iter(components.values()), []))
    z = {name: zscores(list(components[name])) for name in weights}
    return [round(sum(weights[name] * z[name][i] for name in weights), 4) for i in range(count)]


def merge_scores(parts: list[Scores]) -> Scores:
    """Concatenate the scores of several calls, in order, as if scored in one."""
    if len(parts) == 1:
        return parts[0]
    names = list(parts[0].components) if parts else []
    components = {name: [v for p in parts for v in p.components[name]] for name in names}
    weights = parts[0].weights if parts else {}
    values = weighted_zsum(components, weights) if weights else [v for p in parts for v in p.values]
    return Scores(values, components, weights)


@dataclass(frozen=True)
class Deadline:
    """An absolute wall-clock deadline; wall clock so it means the same in every process."""

    at: float

    @classmethod
    def after_ms(cls, ms: float) -> "Deadline":
        return cls(time.time() + ms / 1000.0)

    def remaining(self) -> float:
        return self.at - time.time()

    def earlier_by(self, seconds: float) -> "Deadline":
        return Deadline(self.at - seconds)
