"""The front door: admission decided before FastAPI sees a request.

Under a burst, what makes a refusal slow is not the decision (microseconds) but
everything in front of it: FastAPI's routing, its middleware and exception
handlers, the request body parsed twice. `AdmissionGate` is a pure-ASGI layer
outside the app. For the two reranking routes it reads the body, checks the key,
validates the request and runs `Reranker.admit` itself, so a refusal (401, 429,
503 with Retry-After, or any 4xx the plan raises) is written straight back
without entering the app, and nothing it awaits is slow (the generator's load
and the reward models are cached readings). An admitted request goes on to its
route with the plan in `request.state.plan`, held for as long as the answer (or
the stream) takes. A body the gate cannot validate goes on unplanned, so the
route's own validation names the field in the usual 400, and a batch of prompts
is admitted prompt by prompt by its route.
"""

from __future__ import annotations

import contextlib
import time

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from service import metrics
from service.callers import identify
from service.errors import APIError
from service.protocol import ChatCompletionRequest, CompletionRequest, RerankRequest
from service.serving import Reranker

RERANK_ROUTES: dict[str, type[RerankRequest]] = {
    "/v1/completions": CompletionRequest,
    "/v1/chat/completions": ChatCompletionRequest,
}


async def read_body(receive) -> tuple[bytes, list[dict]]:
    """The whole request body, and the messages it came in (to replay them)."""
    messages, chunks = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client left: let the app see it
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def replaying(messages: list[dict], receive):
    """A `receive` that gives back what was already read, then the real one."""
    pending = list(messages)

    async def replay():
        return pending.pop(0) if pending else await receive()

    return replay


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return ""


class AdmissionGate:
    def __init__(self, app, reranker: Reranker, keys: dict[str, str]):
        self.app, self.reranker, self.keys = app, reranker, keys

    async def __call__(self, scope, receive, send):
        model = RERANK_ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if model is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        arrived = time.time()  # the budget's clock starts here, before anything is read
        state = scope.setdefault("state", {})
        state["arrived"] = arrived
        body, messages = await read_body(receive)
        receive = replaying(messages, receive)
        try:
            caller = identify(self.keys, header(scope, b"authorization"))
        except APIError as exc:
            return await self.answer(scope, receive, send, exc, arrived)
        try:
            request = model.model_validate_json(body)
        except ValidationError:  # the route validates again and names the field
            return await self.app(scope, receive, send)
        if isinstance(request, CompletionRequest) and len(request.batch()) != 1:
            return await self.app(scope, receive, send)  # each prompt is admitted by the route
        async with contextlib.AsyncExitStack() as held:  # admission holds until the answer is written
            try:
                state["plan"] = await held.enter_async_context(self.reranker.admit(request, arrived, caller))
            except APIError as exc:
                return await self.answer(scope, receive, send, exc, arrived)
            await self.app(scope, receive, send)

    @staticmethod
    async def answer(scope, receive, send, exc: APIError, arrived: float) -> None:
        """A refusal, written here in the one error envelope and counted like the app's answers."""
        await error_response(exc)(scope, receive, send)
        endpoint = scope["path"]  # one of RERANK_ROUTES: never a client's own string
        metrics.REQUESTS.labels(endpoint, str(exc.status)).inc()
        metrics.REQUEST_LATENCY.labels(endpoint).observe(time.time() - arrived)
