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


@dataclass(frozen=True)
class Scores:
    """Rewards for a batch of completions, one value per completion, higher is better.

    `components` optionally breaks each value down (name -> one value per completion).
    """

    values: list[float]
    components: Mapping[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Deadline:
    """An absolute wall-clock deadline; wall clock so it means the same in every process."""

    at: float

    @classmethod
    def after_ms(cls, ms: float) -> "Deadline":
        return cls(time.time() + ms / 1000.0)

    def remaining(self) -> float:
        return self.at - time.time()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def earlier_by(self, seconds: float) -> "Deadline":
        return Deadline(self.at - seconds)
