"""The `openai` generator: candidates from a remote OpenAI-compatible server
(vLLM's own `vllm.entrypoints.openai.api_server`, or a fleet behind a balancer).

Each candidate is one streamed request (same prompt, its own seed), so each can
be stopped on its own: closing its stream makes vLLM abort the request. With
`stream_options.continuous_usage_stats` vLLM reports the token count on every
chunk, which pruning checkpoints need; other servers' chunks are counted
instead. Chat prompts go to /v1/chat/completions, where the server applies its
own chat template. The server's 4xx become BadRequest with its message; any
other failure is a GeneratorServiceError (502).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, AsyncIterator

import httpx

from service.config import OpenAIGeneratorConfig
from service.errors import APIError, BadRequest, Overloaded
from service.generator.race import Prepared, Progress, RacingGenerator
from service.types import Candidate, Prompt, SamplingSpec

if TYPE_CHECKING:
    from service.reward.catalog import RewardCatalog


log = logging.getLogger(__name__)


class GeneratorServiceError(APIError):
    """The generator server failed or answered something unusable (502 to clients)."""

    status = 502
    type = "server_error"


class OpenAIGenerator(RacingGenerator):
    def __init__(self, config: OpenAIGeneratorConfig, judge: RewardCatalog | None = None):
        self.config, self.judge = config, judge
        self.model_name = config.served_model_name
        self.max_model_len = config.max_model_len
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # No cap on connections: each candidate holds one for its whole stream and the
        # server queues what it cannot run yet (httpx's default cap of 100 would queue here).
        self.client = httpx.AsyncClient(
            base_url=config.url.rstrip("/"), timeout=config.timeout_s, headers=headers,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        self.can_tokenize: bool | None = None  # known once the server answered POST /tokenize
        self.one_token_bans: dict[tuple[str, ...], dict[int, float]] = {}  # banned words -> their one-token forms' bias

    async def check_ready(self) -> None:
        try:
            ready = (await self.client.get("/v1/models", timeout=5)).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            log.warning("the generator server at %s is not answering", self.config.url)
            raise Overloaded("the generator server is not answering", code="engine_unavailable")

    def request(self, prompt: Prompt, sampling: SamplingSpec, i: int) -> tuple[str, dict[str, Any]]:
        """Candidate i's endpoint and body."""
        if sampling.logprobs is not None:
            raise BadRequest("logprobs are not available with the openai generator (a remote server)",
                             param="logprobs")
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
        options = sampling.engine_options()  # vLLM's server takes its extra sampling options in the body
        if "logit_bias" in options:
            options["logit_bias"] = {str(token): bias for token, bias in options["logit_bias"].items()}
        body |= options
        if sampling.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": json.loads(sampling.json_schema)}}
        elif sampling.json_object:
            body["response_format"] = {"type": "json_object"}
        if prompt.messages is not None:
            return "/v1/chat/completions", body | {"messages": [dict(m) for m in prompt.messages]}
        return "/v1/completions", body | {"prompt": list(prompt.token_ids) if prompt.token_ids else prompt.text}

    async def detokenize(self, token_ids) -> str:
        """vLLM's server decodes token ids at POST /detokenize; other servers cannot, so a 400."""
        try:
            response = await self.client.post("/detokenize", json={"model": self.model_name, "tokens": list(token_ids)})
        except httpx.HTTPError as exc:
            raise self.failed(type(exc).__name__) from None
        answer = json_or_none(await response.aread())
        if response.status_code == 404:
            return await super().detokenize(token_ids)  # not vLLM's server: token prompts are refused
        if response.status_code != 200:
            raise self.refusal(response.status_code, answer, Prompt(token_ids=tuple(token_ids)))
        if not isinstance(answer, dict) or not isinstance(answer.get("prompt"), str):
            raise GeneratorServiceError("the generator server's /detokenize answer has no prompt text")
        return answer["prompt"]

    async def with_one_token_bans(self, sampling: SamplingSpec) -> SamplingSpec:
        """`sampling` with its banned words' one-token forms also at the lowest logit bias.

        The server's vLLM bans a word's after-a-space form by `bad_words` only when it has as
        many tokens as the bare word (see service.generator.vllm.ban_sequences); a bias bans
        the one-token forms wherever they come. Tokenized by the server's POST /tokenize, once
        per word list; a server without it gets the words as `bad_words` alone.
        """
        if not sampling.bad_words or self.can_tokenize is False:
            return sampling
        if sampling.bad_words not in self.one_token_bans:
            forms = [form for word in sampling.bad_words for form in (word.lstrip(), " " + word.lstrip())]
            tokenized = await asyncio.gather(*(self.tokenize(form) for form in forms))
            if self.can_tokenize is False or None in tokenized:  # none now, or a try that failed: not cached
                return sampling
            if len(self.one_token_bans) >= 256:
                self.one_token_bans.clear()
            self.one_token_bans[sampling.bad_words] = {ids[0]: -100.0 for ids in tokenized if len(ids) == 1}
        bias = dict(sampling.logit_bias) | self.one_token_bans[sampling.bad_words]
        return replace(sampling, logit_bias=tuple(bias.items()))

    async def tokenize(self, text: str) -> list[int] | None:
        """The server's token ids for `text` (vLLM's POST /tokenize); None when it failed."""
        try:
            response = await self.client.post(
                "/tokenize", json={"model": self.model_name, "prompt": text, "add_special_tokens": False}, timeout=10)
        except httpx.HTTPError:
            return None
        answer = json_or_none(await response.aread())
        if response.status_code in (404, 405):
            self.can_tokenize = False  # not vLLM's server
        if response.status_code != 200 or not isinstance(answer, dict) or not isinstance(answer.get("tokens"), list):
            return None
        return answer["tokens"]

    async def prepare(self, prompt: Prompt, sampling: SamplingSpec) -> Prepared:
        # Prompt tokens: from the server's usage.
        return Prepared(prompt, await self.with_one_token_bans(sampling))

    async def candidate(self, request: Prepared, i: int, progress: Progress) -> Candidate:
        prompt, sampling = request.prompt, request.sampling
        path, body = self.request(prompt, sampling, i)
        text, reason = "", None
        pieces, counted = 0, None  # chunks that carried text; the server's own count once it gives one
        with self.running_candidate():
            try:
                # Cancelling this run leaves the `async with`, which closes the stream: the server aborts.
                async with self.client.stream("POST", path, json=body) as response:
                    if response.status_code != 200:
                        raise self.refusal(response.status_code, json_or_none(await response.aread()), prompt)
                    async for chunk in server_events(response):
                        if "error" in chunk:  # vLLM reports a failure after the 200 as an event
                            code = chunk["error"].get("code") if isinstance(chunk["error"], dict) else None
                            raise self.refusal(code if isinstance(code, int) else 500, chunk, prompt)
                        for choice in chunk.get("choices") or []:
                            piece = choice.get("text") or (choice.get("delta") or {}).get("content")
                            if piece:
                                text += piece
                                pieces += 1
                            reason = choice.get("finish_reason") or reason
                        usage = chunk.get("usage") or {}
                        if usage.get("completion_tokens") is not None:
                            counted = usage["completion_tokens"]
                        if usage.get("prompt_tokens") is not None:
                            progress.prompt_tokens = usage["prompt_tokens"]
                        progress.update(i, text, pieces if counted is None else counted)
            except httpx.HTTPError as exc:  # unreachable, timed out, or the stream broke off
                raise self.failed(type(exc).__name__) from None
        tokens = pieces if counted is None else counted
        return Candidate(i, text, reason or "stop", tokens, prompt_tokens=progress.prompt_tokens)

    def failed(self, what: str) -> GeneratorServiceError:
        """A 502 naming the generator server by its role; its address goes to the log only."""
        log.warning("the generator server at %s failed: %s", self.config.url, what)
        return GeneratorServiceError(f"the generator server failed: {what}")

    def refusal(self, status: int, answer: Any, prompt: Prompt) -> APIError:
        """The server's own 4xx, with its message and parameter (the prompt's, if it
        names none); anything else is a 502."""
        if status not in (400, 404, 422):
            return self.failed(f"HTTP {status}")
        try:
            error = answer["error"]
            message, param = str(error["message"]), error.get("param")
        except (KeyError, TypeError):  # not OpenAI's envelope: a raw body is no message for clients
            message, param = "the generator server refused the request", None
        return BadRequest(message, param=param or ("messages" if prompt.messages is not None else "prompt"))


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


async def server_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent-event stream, up to `data: [DONE]`."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        event = json_or_none(data.encode())
        if not isinstance(event, dict):
            raise GeneratorServiceError("the generator server sent an event that is not a JSON object")
        yield event
