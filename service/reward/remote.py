"""The `remote` reward: scores from an HTTP reward service.

Protocols:
- `vllm-classify`: vLLM's POST /classify ({"model", "input": [...]} -> data[i].probs);
  a one-class reward head gives probs[0], a two-class one the last class;
- `vllm-pooling`:  vLLM's POST /pooling (data[i].data: a score, or per-token scores
  whose last token is the sequence's reward);
- `openrlhf`:      OpenRLHF's POST /get_reward ({"query": [...]} -> {"rewards": [...]}).

Each completion is sent as the prompt followed by the completion. Timeouts, HTTP
errors and malformed answers raise RewardServiceError: never a silent zero.
"""

from __future__ import annotations

import logging

from typing import Any, Sequence

import httpx

from service.config import RemoteRewardConfig
from service.errors import APIError
from service.reward.base import RewardModel
from service.types import Prompt, Scores


log = logging.getLogger(__name__)


class RewardServiceError(APIError):
    """The remote reward service failed or answered something unusable (502 to clients)."""

    status = 502
    type = "server_error"


def render(prompt: Prompt, completion: str) -> str:
    if prompt.messages is None:
        return f"{prompt.text}{completion}"
    turns = "".join(f"{m['role']}: {m['content']}\n" for m in prompt.messages)
    return f"{turns}assistant: {completion}"


def _last_scalar(value: Any) -> float:
    while isinstance(value, list):
        if not value:
            raise RewardServiceError("empty score in the reward service's answer")
        value = value[-1] if isinstance(value[-1], list) or len(value) > 1 else value[0]
    return float(value)


class RemoteReward(RewardModel):
    kind = "remote"

    def __init__(self, config: RemoteRewardConfig):
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = httpx.AsyncClient(base_url=config.url.rstrip("/"), timeout=config.timeout_s, headers=headers)

    def request(self, texts: list[str]) -> tuple[str, dict]:
        if self.config.protocol == "openrlhf":
            return "/get_reward", {"query": texts}
        body = {"input": texts}
        if self.config.model:
            body["model"] = self.config.model
        return ("/classify" if self.config.protocol == "vllm-classify" else "/pooling"), body

    def parse(self, answer: Any, count: int) -> list[float]:
        try:
            if self.config.protocol == "openrlhf":
                values = [float(v) for v in answer["rewards"]]
            else:
                rows = sorted(answer["data"], key=lambda row: row["index"])
                if self.config.protocol == "vllm-classify":
                    values = [float(r["probs"][0] if len(r["probs"]) == 1 else r["probs"][-1]) for r in rows]
                else:
                    values = [_last_scalar(r["data"]) for r in rows]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RewardServiceError(f"unexpected answer from the reward service: {type(exc).__name__}") from None
        if len(values) != count:
            raise RewardServiceError(f"reward service returned {len(values)} scores for {count} texts")
        return values

    def failed(self, what: str) -> RewardServiceError:
        """A 502 naming the reward service by its role; its address goes to the log only."""
        log.warning("the reward service at %s %s", self.config.url, what)
        return RewardServiceError(f"the reward service {what}")

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        texts = [render(prompt, c) for c in completions]
        path, body = self.request(texts)
        try:
            response = await self.client.post(path, json=body)
        except httpx.TimeoutException:
            raise self.failed(f"timed out after {self.config.timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise self.failed(f"unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise self.failed(f"answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise RewardServiceError("reward service answered with something other than JSON") from None
        return Scores(self.parse(answer, len(texts)))
