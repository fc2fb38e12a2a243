"""The HTTP API: a FastAPI app around a Generator and named RewardModels.

`create_api` knows nothing about Ray: the ingress deployment hands it adapters
over deployment handles, tests hand it fakes directly.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service import metrics
from service.config import ServiceConfig
from service.errors import APIError, BudgetExhausted, InternalError, NotFound, PayloadTooLarge, Unauthorized, find_api_error
from service.generator.base import Generator
from service.protocol import (
    CandidateReport,
    ChatCompletionRequest,
    CompletionRequest,
    Reranking,
    RewardsRequest,
    Usage,
    new_id,
    now,
    reject,
)
from service.pruning import Pruning
from service.reward.base import RewardModel
from service.reward.catalog import RewardCatalog
from service.selection import Selection, best_of_n
from service.types import Deadline, PruningSpec

log = logging.getLogger(__name__)

# The least time kept back from generation for scoring and the response (more when
# the reward model is slow: see selection.ScoringCost), and the grace past the
# deadline after which the request is failed rather than waited for.
SCORING_RESERVE_S = 0.15
DEADLINE_GRACE_S = 1.0


def unwrapped(exc: Exception) -> Exception:
    """An APIError raised in another replica arrives wrapped by Ray: unwrap it so
    the client gets its status and envelope; anything else stays as it is (a 500)."""
    return find_api_error(exc) or exc


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


class BodyLimit:
    """Reject request bodies over `max_bytes` with 413, before they are parsed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = PayloadTooLarge(f"request body exceeds {self.max_bytes} bytes", code="body_too_large")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await error_response(too_large)(scope, receive, send)
        # Bodies without a length (chunked) are counted as they arrive.
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large
            return message

        try:
            await self.app(scope, counted, send)
        except PayloadTooLarge as exc:
            await error_response(exc)(scope, receive, send)


def create_api(config: ServiceConfig, generator: Generator, catalog: RewardCatalog) -> FastAPI:
    limits = config.limits
    api = FastAPI(title="prune", description="Best-of-N reranking with a style reward model.")

    @api.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return error_response(reject(None, "the request body is not valid JSON"))
        param = ".".join(loc) or None
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        return error_response(reject(param, f"{param}: {message}" if param else message))

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return error_response(InternalError("internal error", code="internal_error"))

    @api.middleware("http")
    async def _count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        # The matched route template, never the raw path: label values stay bounded.
        route = request.scope.get("route")
        endpoint = route.path if route is not None else "unmatched"
        if endpoint != "/metrics":
            metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
            metrics.REQUEST_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        return response

    def authorize(request: Request) -> None:
        if not config.api_keys:
            return
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not any(hmac.compare_digest(token, key) for key in config.api_keys):
            raise Unauthorized("missing or invalid API key", code="invalid_api_key")

    async def pick_reward(requested: str | None) -> tuple[str, RewardModel]:
        """A configured reward model by name: clients never name a path or a kind."""
        rewards = await catalog.current()
        name = requested or rewards.default
        if name not in rewards.models:
            raise NotFound(
                f"reward_model {name!r} is not configured; configured: {', '.join(sorted(rewards.models))}",
                param="reward_model",
                code="reward_model_not_found",
            )
        return name, rewards.models[name]

    async def plan(req: CompletionRequest | ChatCompletionRequest, max_tokens: int | None):
        """Resolve defaults and check the request against the configured limits."""
        if req.model != generator.model_name:
            raise NotFound(f"model {req.model!r} does not exist; try GET /v1/models", param="model", code="model_not_found")
        reward = await pick_reward(req.reward_model)
        best_of = req.best_of or max(limits.best_of_default, req.n)
        if best_of > limits.best_of_max:
            raise reject("best_of", f"best_of: at most {limits.best_of_max}")
        if req.n > best_of:
            raise reject("n", f"n ({req.n}) must not exceed best_of ({best_of})")
        max_tokens = max_tokens or limits.max_tokens_default
        if max_tokens > limits.max_tokens_max:
            raise reject("max_tokens", f"max_tokens: at most {limits.max_tokens_max}")
        budget_ms = req.latency_budget_ms or limits.latency_budget_ms_default
        if budget_ms > limits.latency_budget_ms_max:
            raise reject("latency_budget_ms", f"latency_budget_ms: at most {limits.latency_budget_ms_max}")
        return reward, best_of, max_tokens, budget_ms

    async def adapt(best_of: int, n: int) -> int:
        """Fewer candidates when the generator is saturated, so budgets still hold."""
        if not limits.saturation_candidates:
            return best_of
        room = limits.saturation_candidates - await generator.load()
        if room >= best_of:
            return best_of
        metrics.ADAPTIVE_REDUCTIONS.inc()
        floor = max(limits.best_of_floor, limits.min_candidates, n)
        return min(best_of, max(floor, room))

    def pruning_for(req, best_of: int, reward_name: str, reward: RewardModel) -> Pruning | None:
        """The request's pruning schedule: its own, the configured one, or none."""
        configured, asked = config.pruning, req.pruning
        wanted = asked.enabled if asked is not None else configured.enabled and best_of >= configured.min_best_of
        if not wanted:
            return None
        spec = PruningSpec(
            checkpoints=tuple((asked and asked.checkpoints) or configured.checkpoints),
            fraction=(asked and asked.fraction) or configured.fraction,
        )
        return Pruning(spec, max(req.n, limits.min_candidates), reward_name, reward)

    async def rerank(req, request: Request, chat: bool, max_tokens: int | None) -> Response:
        started = time.time()
        authorize(request)
        (reward_name, reward), best_of, max_tokens, budget_ms = await plan(req, max_tokens)
        deadline = Deadline(started + budget_ms / 1000.0)
        # The answer must also get back to the client by the deadline: selection aims earlier.
        selection_deadline = deadline.earlier_by(min(limits.response_margin_ms, budget_ms / 4) / 1000.0)
        prompt = req.to_prompt()
        try:
            async with asyncio.timeout(budget_ms / 1000.0 + DEADLINE_GRACE_S):
                effective = await adapt(best_of, req.n)
                selection = await best_of_n(
                    generator,
                    reward,
                    prompt,
                    req.sampling(max_tokens),
                    best_of=effective,
                    n=req.n,
                    deadline=selection_deadline,
                    scoring_reserve_s=SCORING_RESERVE_S,
                    pruning=pruning_for(req, effective, reward_name, reward),
                )
        except TimeoutError:
            metrics.BUDGET_CUTOFFS.inc()
            metrics.BUDGET_EXHAUSTED.inc()
            raise BudgetExhausted(
                "the latency budget ran out before an answer was ready", param="latency_budget_ms", code="budget_exhausted"
            ) from None
        except BudgetExhausted:
            metrics.BUDGET_EXHAUSTED.inc()
            raise
        except Exception as exc:
            raise unwrapped(exc) from None
        record(selection, reward_name, effective)
        body = respond(req, chat, selection, reward_name, best_of, effective, budget_ms, started)
        if req.stream:
            return StreamingResponse(stream_chunks(body, chat, req), media_type="text/event-stream")
        return JSONResponse(body)

    def record(selection: Selection, reward_name: str, effective_best_of: int) -> None:
        metrics.BEST_OF.observe(effective_best_of)
        metrics.GENERATE_LATENCY.observe(selection.generate_s)
        metrics.SCORE_LATENCY.observe(selection.score_s)
        metrics.CANDIDATES_GENERATED.inc(selection.candidates_generated)
        metrics.CANDIDATES_SCORED.inc(len(selection.scored))
        metrics.COMPLETION_TOKENS.inc(selection.completion_tokens)
        metrics.CHOSEN_REWARD.labels(reward_name).observe(selection.chosen[0].score)
        for sc in selection.scored:
            metrics.CANDIDATE_REWARD.labels(reward_name).observe(sc.score)
        metrics.REWARD_MARGIN.labels(reward_name).observe(selection.margin)
        metrics.REWARD_UPLIFT.labels(reward_name).observe(selection.uplift)
        if selection.stopped_early:
            metrics.BUDGET_CUTOFFS.inc()

    def respond(req, chat, selection: Selection, reward_name, best_of, effective, budget_ms, started) -> dict:
        choices = []
        for index, sc in enumerate(selection.chosen):
            c = sc.candidate
            if chat:
                choices.append({"index": index, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason, "logprobs": None})
            else:
                choices.append({"index": index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None})
        reranking = Reranking(
            best_of=best_of,
            effective_best_of=effective,
            candidates_generated=selection.candidates_generated,
            candidates_scored=len(selection.scored),
            reward_model=reward_name,
            scores=[sc.score for sc in selection.chosen],
            elapsed_ms=round((time.time() - started) * 1000, 1),
            budget_ms=budget_ms,
            deadline_ms=round(started * 1000) + budget_ms,
            stopped_early=selection.stopped_early,
            candidates_pruned=selection.candidates_pruned,
            candidates=[
                CandidateReport(
                    text=sc.candidate.text,
                    score=sc.score,
                    finish_reason=sc.candidate.finish_reason,
                    completion_tokens=sc.candidate.completion_tokens,
                )
                for sc in selection.scored
            ]
            if req.return_candidates
            else None,
        )
        usage = Usage(
            prompt_tokens=selection.prompt_tokens,
            completion_tokens=selection.completion_tokens,
            total_tokens=selection.prompt_tokens + selection.completion_tokens,
        )
        return {
            "id": new_id("chatcmpl" if chat else "cmpl"),
            "object": "chat.completion" if chat else "text_completion",
            "created": now(),
            "model": generator.model_name,
            "choices": choices,
            "usage": usage.model_dump(),
            "reranking": reranking.model_dump(exclude_none=True),
        }

    @api.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        return await rerank(req, request, chat=False, max_tokens=req.max_tokens)

    @api.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        return await rerank(req, request, chat=True, max_tokens=req.requested_max_tokens())

    @api.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {
            "object": "list",
            "data": [{"id": generator.model_name, "object": "model", "created": 0, "owned_by": "prune", "max_model_len": generator.max_model_len}],
        }

    @api.get("/v1/reward_models")
    async def reward_models(request: Request):
        authorize(request)
        rewards = await catalog.current()
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "reward_model", "kind": model.kind, "default": name == rewards.default}
                for name, model in rewards.models.items()
            ],
        }

    @api.post("/v1/rewards")
    async def score_completions(req: RewardsRequest, request: Request):
        authorize(request)
        name, reward = await pick_reward(req.reward_model)
        if len(req.completions) > limits.rewards_max_completions:
            raise reject("completions", f"completions: at most {limits.rewards_max_completions} per request")
        try:
            scores = await reward.score(req.to_prompt(), req.completions)
        except Exception as exc:
            raise unwrapped(exc) from None
        body: dict[str, Any] = {"reward_model": name, "scores": list(scores.values)}
        if scores.components:
            body["components"] = {k: list(v) for k, v in scores.components.items()}
        return body

    @api.get("/healthz")
    async def healthz():
        await generator.check_ready()
        return {"status": "ok"}

    @api.get("/metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    api.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    return api


async def stream_chunks(body: dict[str, Any], chat: bool, req) -> AsyncIterator[bytes]:
    """OpenAI's server-sent-event chunks for an already selected response."""
    base = {"id": body["id"], "object": "chat.completion.chunk" if chat else "text_completion", "created": body["created"], "model": body["model"]}

    def event(payload: dict) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    for choice in body["choices"]:
        i = choice["index"]
        if chat:
            yield event(base | {"choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
            yield event(base | {"choices": [{"index": i, "delta": {"content": choice["message"]["content"]}, "finish_reason": None}]})
            yield event(base | {"choices": [{"index": i, "delta": {}, "finish_reason": choice["finish_reason"]}]})
        else:
            yield event(base | {"choices": [{"index": i, "text": choice["text"], "finish_reason": None, "logprobs": None}]})
            yield event(base | {"choices": [{"index": i, "text": "", "finish_reason": choice["finish_reason"], "logprobs": None}]})
    # prune's block rides on a final chunk with no choices, like OpenAI's usage chunk.
    final = base | {"choices": [], "reranking": body["reranking"]}
    if (req.stream_options or {}).get("include_usage"):
        final["usage"] = body["usage"]
    yield event(final)
    yield b"data: [DONE]\n\n"
