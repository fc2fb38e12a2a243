"""The RewardModel interface: score a batch of completions of one prompt."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from service.types import Prompt, Scores


class RewardModel(ABC):
    """Scores completions of one prompt; higher is better.

    `score` returns exactly one value per completion, in order, also for empty
    strings. Scores are comparable within one call; kinds differ in scale. A model
    that cannot score raises: a failure is never reported as a zero.
    """

    kind: str

    async def start(self) -> None:
        """Load weights. Called once before the first request."""

    @abstractmethod
    async def score(self, prompt: Prompt, completions: Sequence[str], max_tokens: int | None = None) -> Scores: ...

    async def score_many(self, batch: Sequence[tuple[Prompt, Sequence[str], int | None]]) -> list[Scores]:
        """Score several prompts' completions at once: (prompt, completions, max_tokens) each.

        The scorer deployment calls this with the jobs of concurrent requests;
        models that run on a device override it to fill one padded batch.
        """
        return [await self.score(prompt, completions, max_tokens) for prompt, completions, max_tokens in batch]
