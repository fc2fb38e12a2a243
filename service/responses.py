"""Response bodies built from a selection: completion and chat, whole or as
OpenAI's server-sent-event chunks.

The two endpoints differ only in how a choice looks; a `ResponseShape` says
that, and everything else (usage, the `reranking` block, ids) is shared.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from service.protocol import CandidateReport, CommitReport, PrunedReport, Reranking, Usage, new_id, now
from service.selection import Selection, new_text
from service.plan import RerankPlan
from service.tracing import timings
from service.types import Candidate


@dataclass(frozen=True)
class ResponseShape:
    object: str
    chunk_object: str
    id_prefix: str

    def choice(self, index: int, candidate: Candidate) -> dict[str, Any]:
        return {"index": index, "text": candidate.text, "finish_reason": candidate.finish_reason,
                "logprobs": completion_logprobs(candidate)}

    # A streamed choice: an opening chunk (chat only), its text in pieces, a finish chunk.
    def opening(self, index: int) -> dict[str, Any] | None:
        return None

    def piece(self, index: int, text: str, whole: Candidate | None = None) -> dict[str, Any]:
        """A piece of text; `whole` when the piece is the candidate's whole text, so its logprobs ride along."""
        return {"index": index, "text": text, "finish_reason": None,
                "logprobs": None if whole is None else completion_logprobs(whole)}

    def finish(self, index: int, reason: str) -> dict[str, Any]:
        return {"index": index, "text": "", "finish_reason": reason, "logprobs": None}


class ChatShape(ResponseShape):
    def choice(self, index: int, candidate: Candidate) -> dict[str, Any]:
        message = {"role": "assistant", "content": candidate.text}
        return {"index": index, "message": message, "finish_reason": candidate.finish_reason,
                "logprobs": chat_logprobs(candidate)}

    def opening(self, index: int) -> dict[str, Any] | None:
        return {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}

    def piece(self, index: int, text: str, whole: Candidate | None = None) -> dict[str, Any]:
        return {"index": index, "delta": {"content": text}, "finish_reason": None,
                "logprobs": None if whole is None else chat_logprobs(whole)}

    def finish(self, index: int, reason: str) -> dict[str, Any]:
        return {"index": index, "delta": {}, "finish_reason": reason}


COMPLETION = ResponseShape("text_completion", "text_completion", "cmpl")
CHAT = ChatShape("chat.completion", "chat.completion.chunk", "chatcmpl")


def reranking(plan: RerankPlan, selection: Selection) -> Reranking:
    """prune's account of how the answer was chosen."""
    first_wave = None if plan.pruning is None else plan.pruning.starting(plan.effective_best_of)
    if first_wave == plan.effective_best_of:  # all started at once: no waves
        first_wave = None
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
        pruned_at=dict(sorted(Counter(c.pruned_at for c in selection.candidates if c.pruned).items())),
        first_wave=first_wave,
        candidates_branched=sum(c.branched for c in selection.candidates),
        candidates_drawn_late=0 if first_wave is None else max(0, selection.candidates_generated - first_wave),
        degraded=selection.degraded,
        commit=None if selection.commit is None else CommitReport(
            at_tokens=selection.commit.at_tokens,
            at_ms=selection.commit.at_ms,
            candidates_alive=selection.commit.candidates_alive,
            leader_scores=list(selection.commit.leader_scores),
        ),
        timings=timings(plan, selection),
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
        pruned=[PrunedReport(text=c.text, completion_tokens=c.completion_tokens)
                for c in selection.candidates if c.pruned]
        if plan.return_candidates
        else None,
    )


def completion_logprobs(candidate: Candidate) -> dict[str, Any] | None:
    """OpenAI's completions shape: parallel lists, alternatives as {token: logprob}."""
    if candidate.logprobs is None:
        return None
    offsets, at = [], 0
    for entry in candidate.logprobs:
        offsets.append(at)
        at += len(entry.token)
    return {"tokens": [e.token for e in candidate.logprobs], "token_logprobs": [e.logprob for e in candidate.logprobs],
            "top_logprobs": [dict(e.top) for e in candidate.logprobs], "text_offset": offsets}


def chat_logprobs(candidate: Candidate) -> dict[str, Any] | None:
    """OpenAI's chat shape: one object per token, with its bytes and alternatives."""
    if candidate.logprobs is None:
        return None

    def token(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {"content": [token(e.token, e.logprob) | {"top_logprobs": [token(t, lp) for t, lp in e.top]}
                        for e in candidate.logprobs], "refusal": None}


def usage(selection: Selection) -> Usage:
    return Usage(
        prompt_tokens=selection.prompt_tokens,
        completion_tokens=selection.completion_tokens,
        total_tokens=selection.prompt_tokens + selection.completion_tokens,
    )


def envelope(shape: ResponseShape, model: str, kind: str) -> dict[str, Any]:
    """What every body and chunk of a response begins with."""
    return {"id": new_id(shape.id_prefix), "object": kind, "created": now(), "model": model}


def response_body(shape: ResponseShape, model: str, plan: RerankPlan, selection: Selection) -> dict[str, Any]:
    return envelope(shape, model, shape.object) | {
        "choices": [shape.choice(i, sc.candidate) for i, sc in enumerate(selection.chosen)],
        "usage": usage(selection).model_dump(),
        "reranking": reranking(plan, selection).model_dump(exclude_none=True),
    }


def batch_body(shape: ResponseShape, model: str, answers: list[tuple[RerankPlan, Selection]]) -> dict[str, Any]:
    """Several prompts' answers in one body, as OpenAI orders them: prompt i's choice j
    has index i * n + j; usage is summed; `reranking` is a list, one per prompt."""
    choices = [shape.choice(i * plan.n + j, sc.candidate)
               for i, (plan, selection) in enumerate(answers) for j, sc in enumerate(selection.chosen)]
    prompt_tokens = sum(selection.prompt_tokens for _, selection in answers)
    completion_tokens = sum(selection.completion_tokens for _, selection in answers)
    return envelope(shape, model, shape.object) | {
        "choices": choices,
        "usage": Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                       total_tokens=prompt_tokens + completion_tokens).model_dump(),
        "reranking": [reranking(plan, selection).model_dump(exclude_none=True) for plan, selection in answers],
    }


class EventStream:
    """OpenAI's server-sent-event chunks of one response, as its text comes: the
    choices open, their text follows in pieces (all at once when the stream waited
    for selection), then each finishes. Every chunk carries one choice, so a client
    reading chunk.choices[0] of each works; prune's `reranking` rides on the last
    finish, and a chunk without choices comes only for include_usage, as OpenAI
    sends it."""

    def __init__(self, shape: ResponseShape, model: str, include_usage: bool):
        self.shape, self.include_usage = shape, include_usage
        self.base = envelope(shape, model, shape.chunk_object)

    def chunk(self, payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(self.base | payload)}\n\n".encode()

    def open(self, choices: int) -> bytes:
        openings = [self.shape.opening(i) for i in range(choices)]
        return b"".join(self.chunk({"choices": [o]}) for o in openings if o is not None)

    def piece(self, index: int, text: str, whole: Candidate | None = None) -> bytes:
        return self.chunk({"choices": [self.shape.piece(index, text, whole)]})

    def close(self, plan: RerankPlan, selection: Selection) -> bytes:
        """What is left of each choice (what selection did not stream already), the finishes
        and the account; then [DONE]."""
        streamed = selection.streamed
        out = [] if streamed else [self.open(len(selection.chosen))]  # a select stream opens at the end
        account = reranking(plan, selection).model_dump(exclude_none=True)
        for i, sc in enumerate(selection.chosen):
            sent = streamed[i] if streamed else ""
            rest = new_text(sent, sc.candidate.text)
            if rest:  # all of it in a select stream, with the logprobs if asked
                out.append(self.piece(i, rest, whole=None if sent else sc.candidate))
            last = i == len(selection.chosen) - 1
            out.append(self.chunk({"choices": [self.shape.finish(i, sc.candidate.finish_reason)]}
                                  | ({"reranking": account} if last else {})))
        if self.include_usage:
            out.append(self.chunk({"choices": [], "usage": usage(selection).model_dump()}))
        out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    def error(self, body: dict[str, Any]) -> bytes:
        """A failure after the stream began (the status is sent already): an error event, as vLLM sends it."""
        return f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n".encode()
