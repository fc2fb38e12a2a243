"""A deterministic generator for tests: no model, predictable candidates."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import TYPE_CHECKING

from service.config import FakeGeneratorConfig
from service.errors import BadRequest
from service.generator.race import Prepared, Progress, RacingGenerator
from service.types import Candidate, Prompt, SamplingSpec, TokenLogprob

if TYPE_CHECKING:
    from service.reward.catalog import RewardCatalog


class FakeGenerator(RacingGenerator):
    """Candidate i is `texts[(seed + i) % len(texts)]`, cut to `max_tokens` words.

    Each word costs `seconds_per_token`, after a per-candidate start delay, so
    tests can make some candidates slow and check the deadline and aborts.
    `generated_tokens` counts every word produced, aborted candidates included;
    `aborted` counts candidates stopped before they finished.
    """

    VOCABULARY = 50_000

    def __init__(self, config: FakeGeneratorConfig, judge: RewardCatalog | None = None):
        self.config, self.judge = config, judge
        self.model_name = config.served_model_name
        self.max_model_len = config.max_model_len
        self.generated_tokens = 0
        self.aborted = 0
        self.samplings: list[SamplingSpec] = []  # every request's sampling, so tests see what arrived

    def _text(self, i: int, prompt: Prompt) -> str:
        if self.config.texts:
            return self.config.texts[i % len(self.config.texts)]
        return f"Candidate {i} answers: {prompt.last_user_text()[:40]}"

    async def detokenize(self, token_ids) -> str:
        if any(t < 0 or t >= self.VOCABULARY for t in token_ids):
            raise BadRequest(f"token ids must be in 0..{self.VOCABULARY - 1}", param="prompt")
        return " ".join(f"t{t}" for t in token_ids)  # one word a token, as this generator counts

    @staticmethod
    def count_prompt_tokens(prompt: Prompt) -> int:
        if prompt.token_ids is not None:
            return len(prompt.token_ids)
        text = prompt.text if prompt.text is not None else " ".join(m["content"] for m in prompt.messages or ())
        return len(text.split())

    async def prepare(self, prompt: Prompt, sampling: SamplingSpec) -> Prepared:
        self.samplings.append(sampling)
        prompt_tokens = self.count_prompt_tokens(prompt)
        if prompt_tokens + sampling.max_tokens > self.max_model_len:
            raise BadRequest("prompt plus max_tokens exceeds the model's context", param="max_tokens")
        return Prepared(prompt, sampling, prompt_tokens)

    can_branch = True

    async def continuing(self, request: Prepared, text: str, tokens: int) -> Prepared:
        """A branch says the words of its own text that come after the prefix's `tokens` words."""
        sampling = replace(request.sampling, max_tokens=max(1, request.sampling.max_tokens - tokens))
        return replace(request, sampling=sampling, engine=tokens)

    async def candidate(self, request: Prepared, i: int, progress: Progress) -> Candidate:
        prompt, sampling = request.prompt, request.sampling
        text = self._text((sampling.seed or 0) + i, prompt)
        if sampling.wants_json:  # as a grammar would have it: valid JSON unless cut short
            text = json.dumps({"answer": text})
        skip = request.engine or 0  # a branch: the words its prefix stands for
        words = text.split()[skip:]
        lead = " " if skip else ""  # a branch's text goes on after its prefix's last word
        out: list[str] = []
        try:
            with self.running_candidate():
                if self.config.candidate_delays_s:
                    delays = self.config.candidate_delays_s
                    await asyncio.sleep(delays[i % len(delays)])
                for word in words[: sampling.max_tokens]:
                    if self.config.seconds_per_token:
                        await asyncio.sleep(self.config.seconds_per_token)
                    out.append(word)
                    progress.update(i, lead + " ".join(out), len(out))
                    self.generated_tokens += 1
                    if any(s in " ".join(out) for s in sampling.stop):
                        break
        except asyncio.CancelledError:
            self.aborted += 1
            raise
        reason = "length" if len(words) > sampling.max_tokens else "stop"
        return Candidate(i, lead + " ".join(out), reason, len(out), prompt_tokens=progress.prompt_tokens,
                         logprobs=self._logprobs(out, sampling.logprobs))

    @staticmethod
    def _logprobs(words: list[str], k: int | None) -> tuple[TokenLogprob, ...] | None:
        """Deterministic stand-ins: word j has log probability -0.1 * (j + 1), and k alternatives below it."""
        if k is None:
            return None
        tokens = [w if j == 0 else " " + w for j, w in enumerate(words)]  # the tokens join into the text
        out = []
        for j, token in enumerate(tokens):
            logprob = -0.1 * (j + 1)
            top = [(token, logprob)] + [(f"alt{m}", logprob - m) for m in range(1, k)]
            out.append(TokenLogprob(token, logprob, tuple(top[:k])))
        return tuple(out)
