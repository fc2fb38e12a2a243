"""One error type and one envelope: OpenAI's `{"error": {message, type, param, code}}`.

Every failure a client may see is an `APIError`. Anything else becomes a 500 whose
message says nothing about internals.
"""

from __future__ import annotations

import math
import random
from typing import Any

# Refused clients told the same Retry-After come back together and are refused
# together again; each is told a time spread over up to this share past the predicted one.
RETRY_JITTER = 0.5


def retry_after(seconds: float, rng: random.Random | None = None) -> dict[str, str]:
    """Headers telling a refused client when to come back: `Retry-After` (whole
    seconds, at least 1) and `retry-after-ms` (OpenAI's SDKs read it first), the
    predicted `seconds` stretched by a random share of up to RETRY_JITTER."""
    seconds = max(1.0, seconds)
    wait_s = seconds * (1 + (rng or random).uniform(0, RETRY_JITTER))
    # Whole seconds, never sooner than predicted, spread like the milliseconds.
    return {"Retry-After": str(max(math.ceil(seconds), round(wait_s))), "retry-after-ms": str(round(wait_s * 1000))}


class APIError(Exception):
    """An error with its HTTP status, the parameter at fault and OpenAI's type/code."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    # Errors cross Ray process boundaries; keep them picklable with all fields.
    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.param, self.code, self.status, self.headers))

    @property
    def unavailable(self) -> bool:
        """A part the request relies on failed or is out of reach (502/503): a request
        that can go on without it (fallback scoring, no pruning) does."""
        return self.status in (502, 503)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _rebuild(cls, message, param, code, status, headers):
    return cls(message, param=param, code=code, status=status, headers=headers)


class BadRequest(APIError):
    status = 400


class Unauthorized(APIError):
    status = 401
    type = "authentication_error"


class NotFound(APIError):
    status = 404
    type = "not_found_error"


class PayloadTooLarge(APIError):
    status = 413


class Overloaded(APIError):
    """503: not now. Always says when to come back: the computed Retry-After where there is
    one, else a retry in `retry_after_s` (a part restarting or loading: seconds)."""

    status = 503
    type = "server_error"

    def __init__(self, message: str, *, retry_after_s: float = 5.0, **kwargs):
        super().__init__(message, **kwargs)
        if "Retry-After" not in self.headers:
            self.headers = {**self.headers, **retry_after(retry_after_s)}


class BudgetExhausted(APIError):
    """The latency budget ran out before any candidate produced text."""

    status = 504
    type = "timeout_error"


class InternalError(APIError):
    status = 500
    type = "server_error"


def find_cause(exc: BaseException, kinds: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of `kinds` in `exc`'s chain of causes, also through Ray's
    RayTaskError (which keeps the original in `cause`)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, kinds):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
        seen += 1
    return None


def find_api_error(exc: BaseException) -> APIError | None:
    """Return the APIError behind `exc`, also when Ray wrapped it in a RayTaskError."""
    return find_cause(exc, APIError)
