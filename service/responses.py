"""Response bodies built from a selection: completion and chat, whole or as
OpenAI's server-sent-event chunks.

The two endpoints differ only in how a choice looks; a `ResponseShape` says
that, and everything else (usage, the `reranking` block, ids) is shared.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterator

from service.protocol import CandidateReport, Reranking, Usage, new_id, now
from service.selection import Selection
from service.serving import RerankPlan
from service.types import Candidate


@dataclass(frozen=True)
class ResponseShape:
    object: str
    chunk_object: str
    id_prefix: str

    def choice(self, index: int, candidate: Candidate) -> dict[str, Any]:
        return {"index": index, "text": candidate.text, "finish_reason": candidate.finish_reason, "logprobs": None}

    def chunk_choices(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        """The choices of the chunks that stream one whole choice: its text, then its finish."""
        i = choice["index"]
        return [
            {"index": i, "text": choice["text"], "finish_reason": None, "logprobs": None},
            {"index": i, "text": "", "finish_reason": choice["finish_reason"], "logprobs": None},
        ]


class ChatShape(ResponseShape):
    def choice(self, index: int, candidate: Candidate) -> dict[str, Any]:
        message = {"role": "assistant", "content": candidate.text}
        return {"index": index, "message": message, "finish_reason": candidate.finish_reason, "logprobs": None}

    def chunk_choices(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        i = choice["index"]
        return [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
            {"index": i, "delta": {"content": choice["message"]["content"]}, "finish_reason": None},
            {"index": i, "delta": {}, "finish_reason": choice["finish_reason"]},
        ]


COMPLETION = ResponseShape("text_completion", "text_completion", "cmpl")
CHAT = ChatShape("chat.completion", "chat.completion.chunk", "chatcmpl")


def reranking(plan: RerankPlan, selection: Selection) -> Reranking:
    """prune's account of how the answer was chosen."""
    return Reranking(
        best_of=plan.best_of,
        effective_best_of=plan.effective_best_of,
        candidates_generated=selection.candidates_generated,
        candidates_scored=len(selection.scored),
        reward_model=plan.reward_model,
        scores=[sc.score for sc in selection.chosen],
        elapsed_ms=plan.budget.elapsed_ms(time.time()),
        budget_ms=plan.budget.budget_ms,
        deadline_ms=plan.budget.deadline_ms,
        stopped_early=selection.stopped_early,
        candidates_pruned=selection.candidates_pruned,
        degraded=selection.degraded,
        candidates=[
            CandidateReport(
                text=sc.candidate.text,
                score=sc.score,
                finish_reason=sc.candidate.finish_reason,
                completion_tokens=sc.candidate.completion_tokens,
            )
            for sc in selection.scored
        ]
        if plan.return_candidates
        else None,
    )


def response_body(shape: ResponseShape, model: str, plan: RerankPlan, selection: Selection) -> dict[str, Any]:
    usage = Usage(
        prompt_tokens=selection.prompt_tokens,
        completion_tokens=selection.completion_tokens,
        total_tokens=selection.prompt_tokens + selection.completion_tokens,
    )
    return {
        "id": new_id(shape.id_prefix),
        "object": shape.object,
        "created": now(),
        "model": model,
        "choices": [shape.choice(i, sc.candidate) for i, sc in enumerate(selection.chosen)],
        "usage": usage.model_dump(),
        "reranking": reranking(plan, selection).model_dump(exclude_none=True),
    }


def sse_events(shape: ResponseShape, body: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """OpenAI's server-sent-event chunks for an already selected response."""
    base = {"id": body["id"], "object": shape.chunk_object, "created": body["created"], "model": body["model"]}

    def event(payload: dict) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    chunks = [base | {"choices": [chunk_choice]}
              for choice in body["choices"] for chunk_choice in shape.chunk_choices(choice)]
    # prune's block rides on the last chunk with a choice (the finish), so that a client
    # reading chunk.choices[0] of every chunk works; a chunk without choices comes only
    # for include_usage, as OpenAI sends it.
    chunks[-1]["reranking"] = body["reranking"]
    if include_usage:
        chunks.append(base | {"choices": [], "usage": body["usage"]})
    for chunk in chunks:
        yield event(chunk)
    yield b"data: [DONE]\n\n"
