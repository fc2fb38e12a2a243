"""The `openai` generator: candidates from a remote OpenAI-compatible server
(vLLM's own `vllm.entrypoints.openai.api_server`, or a fleet behind a balancer).

Each candidate is one streamed request (same prompt, its own seed), so each can
be stopped on its own: closing its stream makes vLLM abort the request. With
`stream_options.continuous_usage_stats` vLLM reports the token count on every
chunk, which pruning checkpoints need; other servers' chunks are counted
instead. Chat prompts go to /v1/chat/completions, where the server applies its
own chat template.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, AsyncIterator

import httpx

from service.config import OpenAIGeneratorConfig
from service.errors import APIError, BadRequest, Overloaded
from service.generator.base import Generator, Progress, race_deadline
from service.types import Candidate, Deadline, Prompt, SamplingSpec

if TYPE_CHECKING:
    from service.pruning import PruningPlan
    from service.reward.catalog import RewardCatalog


class GeneratorServiceError(APIError):
    """The generator server failed or answered something unusable (502 to clients)."""

    status = 502
    type = "server_error"


class OpenAIGenerator(Generator):
    def __init__(self, config: OpenAIGeneratorConfig, judge: RewardCatalog | None = None):
        self.config, self.judge = config, judge
        self.model_name = config.served_model_name
        self.max_model_len = config.max_model_len
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = httpx.AsyncClient(base_url=config.url.rstrip("/"), timeout=config.timeout_s, headers=headers)

    async def check_ready(self) -> None:
        try:
            ready = (await self.client.get("/v1/models", timeout=5)).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            raise Overloaded(f"the generator server at {self.config.url} is not answering", code="engine_unavailable")

    def request(self, prompt: Prompt, sampling: SamplingSpec, i: int) -> tuple[str, dict[str, Any]]:
        """Candidate i's endpoint and body."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed + i
        if prompt.messages is not None:
            return "/v1/chat/completions", body | {"messages": [dict(m) for m in prompt.messages]}
        return "/v1/completions", body | {"prompt": prompt.text}

    async def generate(
        self, prompt: Prompt, sampling: SamplingSpec, n: int, deadline: Deadline, pruning: PruningPlan | None = None
    ) -> AsyncIterator[Candidate]:
        progress = Progress(0, pruning.checkpoints if pruning else ())  # prompt tokens: from the server's usage
        choose = pruning.chooser(self.judge, prompt) if pruning else None
        runs = [self._one(i, prompt, sampling, progress) for i in range(n)]
        async for candidate in race_deadline(runs, deadline, progress, choose):
            yield candidate

    async def _one(self, i: int, prompt: Prompt, sampling: SamplingSpec, progress: Progress) -> Candidate:
        path, body = self.request(prompt, sampling, i)
        text, tokens, reason = "", 0, None
        with self.running_candidate():
            try:
                # Cancelling this run leaves the `async with`, which closes the stream: the server aborts.
                async with self.client.stream("POST", path, json=body) as response:
                    if response.status_code != 200:
                        raise self.refusal(response.status_code, await response.aread())
                    async for chunk in server_events(response):
                        for choice in chunk.get("choices") or []:
                            piece = choice["text"] if "text" in choice else (choice.get("delta") or {}).get("content")
                            if piece:
                                text += piece
                                tokens += 1  # until the server says how many
                            reason = choice.get("finish_reason") or reason
                        usage = chunk.get("usage") or {}
                        tokens = usage.get("completion_tokens", tokens)
                        progress.prompt_tokens = usage.get("prompt_tokens", progress.prompt_tokens)
                        progress.update(i, text, tokens)
            except httpx.HTTPError as exc:
                raise GeneratorServiceError(
                    f"generator server at {self.config.url} failed: {type(exc).__name__}", code="generator_unavailable"
                ) from None
        return Candidate(i, text, reason or "stop", tokens, prompt_tokens=progress.prompt_tokens)

    def refusal(self, status: int, body: bytes) -> APIError:
        """The server's own 4xx, with its message and parameter; anything else is a 502."""
        if status in (400, 404, 422):
            try:
                error = json.loads(body)["error"]
                message, param = str(error["message"]), error.get("param")
            except (ValueError, KeyError, TypeError):
                message, param = "the generator server refused the request", None
            return BadRequest(message, param=param or "prompt", code="generator_refused")
        return GeneratorServiceError(f"generator server at {self.config.url} answered HTTP {status}",
                                     code="generator_unavailable")


async def server_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent-event stream, up to `data: [DONE]`."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except ValueError:
            raise GeneratorServiceError("the generator server sent an event that is not JSON") from None
