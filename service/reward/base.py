"""The RewardModel interface: score a batch of completions of one prompt."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Sequence

from service.types import Prompt, Scores


class RewardModel(ABC):
    """Scores completions of one prompt; higher is better.

    `score` returns exactly one value per completion, in order, also for empty
    strings. Scores are comparable within one call; kinds differ in scale. A model
    that cannot score raises: a failure is never reported as a zero. What the client
    asked (the prompt, and the answer length it allowed) is in `prompt`.
    """

    kind: str

    async def start(self) -> None:
        """Load weights. Called once before the first request."""

    @abstractmethod
    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores: ...

    async def score_many(self, batch: Sequence[tuple[Prompt, Sequence[str]]]) -> list[Scores]:
        """Score several prompts' completions at once: (prompt, completions) each.

        The scorer deployment calls this with the jobs of concurrent requests;
        models that run on a device override it to fill one padded batch.
        """
        return [await self.score(prompt, completions) for prompt, completions in batch]


class DeviceRewardModel(RewardModel):
    """A model that runs a forward pass on CPU or GPU over (prompt, completion) pairs.

    Subclasses implement `load()` and `score_pairs()`, both blocking; this class
    runs them off the event loop and flattens the jobs of concurrent requests into
    one list of pairs, so a device batch can span requests.
    """

    loaded = False

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def score_pairs(self, pairs: list[tuple[Prompt, str]]) -> list[float]: ...

    async def start(self) -> None:
        if not self.loaded:
            await asyncio.to_thread(self.load)
            self.loaded = True

    async def score_many(self, batch: Sequence[tuple[Prompt, Sequence[str]]]) -> list[Scores]:
        await self.start()
        pairs = [(prompt, c) for prompt, completions in batch for c in completions]
        values = await asyncio.to_thread(self.score_pairs, pairs)
        out, start = [], 0
        for _, completions in batch:
            out.append(Scores(values[start : start + len(completions)]))
            start += len(completions)
        return out

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        return (await self.score_many([(prompt, completions)]))[0]
