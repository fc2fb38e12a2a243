"""The HTTP API: thin routes over a Reranker (parse, plan, run, render).

Nothing here knows about Ray: the ingress deployment builds the Reranker over
adapters to deployment handles, tests over fakes directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from service import metrics
from service.callers import identify, resolve_keys
from service.errors import APIError, InternalError, NotFound, PayloadTooLarge
from service.gate import AdmissionGate, error_response
from service.protocol import ChatCompletionRequest, CompletionRequest, RerankRequest, RewardsRequest, reject
from service.responses import CHAT, COMPLETION, EventStream, ResponseShape, batch_body, response_body
from service.plan import RerankPlan
from service.selection import Commit, Piece, Selection
from service.serving import Reranker
from service.tracing import RequestTracer

log = logging.getLogger(__name__)


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


class Routes:
    """The endpoints, each a few lines; the request path itself is the Reranker's."""

    def __init__(self, reranker: Reranker, metrics_targets: Callable[[], Awaitable[list[dict]]] | None = None,
                 tracer: RequestTracer | None = None):
        self.reranker, self.config = reranker, reranker.config
        self.tracer = tracer
        self.metrics_targets_of = metrics_targets
        self.generator, self.catalog = reranker.generator, reranker.catalog
        # Read here, in the ingress replica, where the environment and secret files are.
        self.keys = resolve_keys(self.config.callers, self.config.api_keys)

    def authorize(self, request: Request) -> str | None:
        """The caller's name (None without authentication); a 401 for a bad key."""
        return identify(self.keys, request.headers.get("authorization", ""))

    @contextlib.asynccontextmanager
    async def admitted(self, req: RerankRequest, request: Request):
        """The request's plan: the one the gate admitted (service.gate, which holds it),
        or, where no gate ran, admitted here."""
        plan = getattr(request.state, "plan", None)
        if plan is not None:
            yield plan
            return
        async with self.reranker.admit(req, arrived=request.state.arrived, caller=self.authorize(request)) as plan:
            yield plan

    async def rerank(self, req: RerankRequest, request: Request, shape: ResponseShape) -> Response:
        self.authorize(request)
        if req.stream:
            return await self.stream(req, request, shape)
        async with self.admitted(req, request) as plan:
            selection = await self.reranker.run(plan)
        return JSONResponse(response_body(shape, self.generator.model_name, plan, selection),
                            background=self.traced(plan, selection, request))

    def traced(self, plan: RerankPlan, selection: Selection, request: Request) -> BackgroundTask | None:
        """Runs after the answer's last byte is sent: its spans, when tracing is on."""
        if self.tracer is None:
            return None
        return BackgroundTask(self.trace, plan, selection, request.scope["path"])

    def trace(self, plan: RerankPlan, selection: Selection, route: str) -> None:
        """After the answer is out: a failure here is logged, never sent (the answer is whole)."""
        if self.tracer is None:
            return
        try:
            self.tracer.record(plan, selection, time.time(), route)
        except Exception as exc:
            log.error("recording the request's trace failed: %s", type(exc).__name__, exc_info=exc)

    async def stream(self, req: RerankRequest, request: Request, shape: ResponseShape) -> Response:
        """A stream begins when its text is decided: at the commit, or at selection. What
        fails before then is an HTTP error like any other; after, an error event."""
        held = contextlib.AsyncExitStack()  # admission holds for as long as the stream runs
        plan = await held.enter_async_context(self.admitted(req, request))
        events = self.reranker.run_stream(plan)
        try:
            first = await anext(events)
        except BaseException as exc:
            await events.aclose()
            await held.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        out = EventStream(shape, self.generator.model_name, bool((req.stream_options or {}).get("include_usage")))
        if isinstance(first, Commit):
            policy = "leader" if first.at_tokens > 0 else "single"  # single: nothing to choose
        else:
            policy = "select"

        async def body():
            first_text = True
            try:
                async with held:
                    event = first
                    while True:
                        if isinstance(event, Commit):
                            yield out.open(event.choices)
                        elif isinstance(event, Piece):
                            if first_text:
                                metrics.STREAM_FIRST_TEXT.labels(policy).observe(time.time() - request.state.arrived)
                                first_text = False
                            yield out.piece(event.choice, event.text)
                        else:
                            if first_text:
                                metrics.STREAM_FIRST_TEXT.labels(policy).observe(time.time() - request.state.arrived)
                            yield out.close(plan, event)
                            self.trace(plan, event, request.scope["path"])  # the last chunk is sent
                            return
                        event = await anext(events)
            except APIError as exc:
                yield out.error(exc.body())
            except Exception as exc:
                log.error("stream failed: %s", type(exc).__name__, exc_info=exc)
                yield out.error(InternalError("internal error", code="internal_error").body())
            finally:
                await events.aclose()

        return StreamingResponse(body(), media_type="text/event-stream")

    async def completions(self, req: CompletionRequest, request: Request) -> Response:
        batch = req.batch()
        if len(batch) == 1:
            return await self.rerank(req, request, COMPLETION)
        return await self.rerank_batch(batch, request)

    async def rerank_batch(self, batch: list[CompletionRequest], request: Request) -> Response:
        """Each prompt reranked on its own, concurrently, each admitted like a request of its
        own; one that fails fails the whole (the others are cancelled), as OpenAI's batch does."""
        cap = self.config.limits.batch_prompts_max
        if len(batch) > cap:
            raise reject("prompt", f"prompt: at most {cap} prompts per request")
        if batch[0].stream:
            raise reject("stream", "stream: a batch of prompts is answered whole; send one prompt to stream")
        caller = self.authorize(request)

        async def one(sub: CompletionRequest):
            async with self.reranker.admit(sub, arrived=request.state.arrived, caller=caller) as plan:
                return plan, await self.reranker.run(plan)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(sub)) for sub in batch]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure, with its status and envelope
        return JSONResponse(batch_body(COMPLETION, self.generator.model_name, [t.result() for t in tasks]))

    async def chat_completions(self, req: ChatCompletionRequest, request: Request) -> Response:
        return await self.rerank(req, request, CHAT)

    async def models(self, request: Request) -> dict[str, Any]:
        self.authorize(request)
        model = {"id": self.generator.model_name, "object": "model", "created": 0, "owned_by": "prune",
                 "max_model_len": self.generator.max_model_len}
        return {"object": "list", "data": [model]}

    async def reward_models(self, request: Request) -> dict[str, Any]:
        self.authorize(request)
        rewards = await self.catalog.current()
        data = [{"id": name, "object": "reward_model", "kind": model.kind, "default": name == rewards.default}
                for name, model in rewards.models.items()]
        return {"object": "list", "data": data}

    async def rewards(self, req: RewardsRequest, request: Request) -> dict[str, Any]:
        self.authorize(request)
        rewards = await self.catalog.current()
        name = rewards.resolve(req.reward_model)
        cap = self.config.limits.rewards_max_completions
        if len(req.completions) > cap:
            raise reject("completions", f"completions: at most {cap} per request")
        scores = await rewards.get(name).score(req.to_prompt(), req.completions)
        body: dict[str, Any] = {"reward_model": name, "scores": list(scores.values)}
        if scores.components:
            body["components"] = {k: list(v) for k, v in scores.components.items()}
        return body

    async def healthz(self) -> dict[str, str]:
        """Liveness: this process answers (restart it if not)."""
        return {"status": "ok"}

    async def readyz(self) -> dict[str, str]:
        """Readiness: the engine is up and work is accepted (a 503 otherwise: route elsewhere)."""
        await self.generator.check_ready()
        return {"status": "ready"}

    async def metrics(self) -> Response:
        """This node's replicas (one node: the whole service; a cluster: scrape /metrics/targets instead)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def metrics_targets(self, request: Request) -> list[dict]:
        """Prometheus HTTP service discovery: every live node's metrics exporter (the
        cluster's addresses: with keys configured, it needs one)."""
        self.authorize(request)
        return await self.metrics_targets_of() if self.metrics_targets_of else []

    def add_docs(self, api: FastAPI) -> None:
        """/openapi.json, /docs and /redoc, as FastAPI serves them, but behind the keys when
        keys are configured (the schema names every extension and limit)."""
        from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

        async def openapi(request: Request) -> JSONResponse:
            self.authorize(request)
            return JSONResponse(api.openapi())

        async def docs(request: Request) -> Response:
            self.authorize(request)
            return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{api.title} - Swagger UI")

        async def redoc(request: Request) -> Response:
            self.authorize(request)
            return get_redoc_html(openapi_url="/openapi.json", title=f"{api.title} - ReDoc")

        for path, endpoint in (("/openapi.json", openapi), ("/docs", docs), ("/redoc", redoc)):
            api.get(path, include_in_schema=False)(endpoint)


async def on_api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc)


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's first complaint, as a 400 naming the field."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    if err.get("type") == "json_invalid":
        return error_response(reject(None, "the request body is not valid JSON"))
    param = ".".join(loc) or None
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return error_response(reject(param, f"{param}: {message}" if param else message))


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method, a body it cannot read) in the same envelope."""
    kind = NotFound if exc.status_code == 404 else APIError
    return error_response(kind(str(exc.detail), status=exc.status_code, headers=exc.headers))


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Logged with its type and trace for operators; the client learns nothing internal.
    log.error("unhandled error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
    return error_response(InternalError("internal error", code="internal_error"))


async def count_requests(request: Request, call_next):
    """Stamp the arrival (the budget counts from it) and count every request."""
    if not hasattr(request.state, "arrived"):  # the gate stamps the reranking routes earlier
        request.state.arrived = time.time()
    response = await call_next(request)
    # The matched route template, never the raw path: label values stay bounded.
    route = request.scope.get("route")
    endpoint = route.path if route is not None else "unmatched"
    if not endpoint.startswith("/metrics"):
        metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
        metrics.REQUEST_LATENCY.labels(endpoint).observe(time.time() - request.state.arrived)
    return response


def create_api(reranker: Reranker, metrics_targets: Callable[[], Awaitable[list[dict]]] | None = None,
               tracer: RequestTracer | None = None) -> FastAPI:
    """The app; `tracer` (default: as configured in `tracing`) records answered requests' spans."""
    routes = Routes(reranker, metrics_targets, tracer or RequestTracer.from_config(reranker.config.tracing))
    # /docs, /redoc and /openapi.json: FastAPI's own, but behind the keys (Routes.add_docs).
    api = FastAPI(title="prune", description="Best-of-N reranking with a style reward model.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    api.add_exception_handler(APIError, on_api_error)
    api.add_exception_handler(RequestValidationError, on_validation_error)
    api.add_exception_handler(HTTPException, on_http_error)
    api.add_exception_handler(Exception, on_unexpected)
    api.middleware("http")(count_requests)
    api.post("/v1/completions")(routes.completions)
    api.post("/v1/chat/completions")(routes.chat_completions)
    api.get("/v1/models")(routes.models)
    api.get("/v1/reward_models")(routes.reward_models)
    api.post("/v1/rewards")(routes.rewards)
    api.get("/healthz")(routes.healthz)
    api.get("/readyz")(routes.readyz)
    api.get("/metrics")(routes.metrics)
    api.get("/metrics/targets")(routes.metrics_targets)
    if reranker.config.docs:
        routes.add_docs(api)
    # Outermost first: the body's size, then admission (service.gate), then the app.
    api.add_middleware(AdmissionGate, reranker=reranker, keys=routes.keys)
    api.add_middleware(BodyLimit, max_bytes=reranker.limits.max_body_bytes)
    return api
