"""Who is calling, and how much each caller may ask at once.

A caller is a named API key. Its key comes from an environment variable or a file
(a Kubernetes secret mount) rather than plaintext YAML, and it may have limits:
requests in flight and tokens per minute. The limits hold across every ingress
replica because one `CallerLedger` keeps the books (one Ray Serve replica, or the
plain object in one process); per-replica counters would multiply them.

Keys never reach logs, metric labels or error messages: everything downstream of
`identify` knows a caller by its operator-chosen name only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Collection, Mapping

from service.config import CallerConfig, ConfigError, check_callers
from service.errors import APIError, BadRequest, Unauthorized, retry_after

log = logging.getLogger(__name__)

STALE_AFTER_S = 60.0  # a lease this long past its expected end lost its replica: reap it


@dataclass(frozen=True)
class Limit:
    """A caller's limits without its key: what the ledger is given, across Ray."""

    max_concurrent: int | None = None
    tokens_per_minute: int | None = None


def limits_of(callers: list[CallerConfig]) -> dict[str, Limit]:
    """The callers that have a limit, by name."""
    return {
        c.name: Limit(c.max_concurrent, c.tokens_per_minute)
        for c in callers if c.max_concurrent is not None or c.tokens_per_minute is not None
    }


def _read_key(caller: CallerConfig) -> str:
    where = f"callers.{caller.name}"
    if caller.key is not None:
        key, what = caller.key, f"{where}.key"
    elif caller.key_env is not None:
        what = f"{where}.key_env: environment variable {caller.key_env}"
        if caller.key_env not in os.environ:
            raise ConfigError(f"{what} is not set")
        key = os.environ[caller.key_env]
    else:
        what = f"{where}.key_file: {caller.key_file}"
        try:
            key = Path(caller.key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # strerror only: never echo what the file holds
            raise ConfigError(f"{what}: cannot read it ({getattr(exc, 'strerror', None) or 'not UTF-8 text'})")
    key = key.strip()  # a trailing newline in a secret is not part of the key
    if not key:
        raise ConfigError(f"{what} is empty")
    return key


def resolve_keys(callers: list[CallerConfig], plain_keys: list[str]) -> dict[str, str]:
    """Key -> caller name. Read where the keys are used (the ingress replica), since
    env and secret mounts live there. `plain_keys` (config `api_keys`, no limits) are
    named `api_keys[i]`, which no caller name can be."""
    try:
        check_callers(callers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    named = [(f"api_keys[{i}]", f"api_keys[{i}]", key.strip()) for i, key in enumerate(plain_keys)]
    named += [(c.name, f"callers.{c.name}", _read_key(c)) for c in callers]
    keys: dict[str, str] = {}
    where = {}
    for name, field, key in named:
        if not key:
            raise ConfigError(f"{field}: empty key")
        if key in keys:
            raise ConfigError(f"{field}: same key as {where[key]}; give each caller its own")
        keys[key], where[key] = name, field
    return keys


def identify(keys: Mapping[str, str], authorization_header: str) -> str | None:
    """The caller's name, or None when no keys are configured (no authentication).
    Compares against every key as bytes, so time says nothing about which one is
    close and a non-ASCII header is a 401, not a TypeError."""
    if not keys:
        return None
    header = authorization_header or ""
    token = header[len("Bearer "):].strip().encode() if header.startswith("Bearer ") else b""
    found = None
    for key, name in keys.items():
        if hmac.compare_digest(token, key.encode()):
            found = name
    if found is None or not token:
        raise Unauthorized("missing or invalid API key", code="invalid_api_key")
    return found


class TooManyRequests(APIError):
    status = 429
    type = "rate_limit_error"


def _too_many(message: str, code: str, wait_s: float) -> TooManyRequests:
    headers = retry_after(wait_s)
    return TooManyRequests(f"{message}; retry after {headers['Retry-After']} s", code=code, headers=headers)


@dataclass
class _Held:
    caller: str
    tokens: int
    expected_end: float


@dataclass
class _Bucket:
    tokens: float
    at: float

    def refill(self, capacity: int, now: float) -> None:
        self.tokens = min(capacity, self.tokens + max(0.0, now - self.at) * capacity / 60.0)
        self.at = max(self.at, now)


class CallerLedger:
    """Every caller's leases and token bucket. Plain async methods without awaits
    inside, so each call is atomic on one event loop; deploy it with one replica."""

    def __init__(self, limits: Mapping[str, Any]):
        self.limits = {n: Limit(lim.max_concurrent, lim.tokens_per_minute) for n, lim in limits.items()}
        self.held: dict[str, dict[str, _Held]] = {name: {} for name in self.limits}
        self.owner: dict[str, str] = {}  # lease -> caller
        self.buckets: dict[str, _Bucket] = {}

    async def acquire(self, caller: str, tokens: int, expected_end: float, now: float | None = None) -> str:
        """A lease on one request, reserving `tokens` (the most it can use) until released."""
        now = time.time() if now is None else now
        lease = uuid.uuid4().hex
        limit = self.limits.get(caller)
        if limit is None:  # unknown or plain caller: unlimited, nothing to keep
            return lease
        held, tokens = self.held[caller], max(0, tokens)
        for stale in [k for k, h in held.items() if now > h.expected_end + STALE_AFTER_S]:
            del held[stale], self.owner[stale]  # its tokens stay spent
        tpm = limit.tokens_per_minute
        if tpm is not None and tokens > tpm:
            raise BadRequest(
                f"this request may use up to {tokens} tokens (prompt + best_of × max_tokens), more than the "
                f"{tpm} tokens per minute allowed to this API key; lower max_tokens or best_of",
                param="max_tokens", code="tokens_per_minute",
            )
        if limit.max_concurrent is not None and len(held) >= limit.max_concurrent:
            first_end = min(h.expected_end for h in held.values())
            raise _too_many(f"{limit.max_concurrent} requests in flight, the most this API key may have",
                            "concurrency_limit", first_end - now)
        if tpm is not None:
            bucket = self.buckets.setdefault(caller, _Bucket(tpm, now))
            bucket.refill(tpm, now)
            if bucket.tokens < tokens:
                raise _too_many(f"this request may use up to {tokens} tokens, more than what is left of this API "
                                f"key's {tpm} tokens per minute", "tokens_per_minute",
                                (tokens - bucket.tokens) * 60.0 / tpm)
            bucket.tokens -= tokens
        held[lease] = _Held(caller, tokens, expected_end)
        self.owner[lease] = caller
        return lease

    async def release(self, lease: str, tokens_used: int | None = None, now: float | None = None) -> None:
        """End a lease, giving back the tokens reserved but not used (None: all were used).
        Unknown or already released leases are ignored, so a retry is harmless."""
        caller = self.owner.pop(lease, None)
        if caller is None:
            return
        held = self.held[caller].pop(lease)
        tpm = self.limits[caller].tokens_per_minute
        if tpm is not None and tokens_used is not None and caller in self.buckets:
            bucket = self.buckets[caller]
            bucket.refill(tpm, time.time() if now is None else now)
            bucket.tokens = min(tpm, bucket.tokens + max(0, held.tokens - tokens_used))


class Lease:
    """What the body of `CallerLimits.hold` reports: the tokens really used."""

    def __init__(self, lease_id: str | None = None):
        self.id, self.tokens_used = lease_id, None

    def used(self, tokens: int | None) -> None:
        self.tokens_used = tokens


class CallerLimits:
    """The ingress side: hold a lease for the length of a request. `limited` (names
    of callers with limits) spares the others the round trip to the ledger."""

    def __init__(self, ledger: Any, limited: Collection[str] | None = None, acquire_timeout_s: float = 1.0):
        self.ledger, self.limited, self.acquire_timeout_s = ledger, limited, acquire_timeout_s
        self.pending: set[asyncio.Task] = set()  # releases outliving a cancelled request

    @contextlib.asynccontextmanager
    async def hold(self, caller: str | None, tokens: int, expected_end: float) -> AsyncIterator[Lease]:
        lease = Lease()
        if caller is None or (self.limited is not None and caller not in self.limited):
            yield lease
            return
        acquiring = asyncio.ensure_future(self.ledger.acquire(caller, tokens, expected_end))
        try:
            lease.id = await asyncio.wait_for(asyncio.shield(acquiring), self.acquire_timeout_s)
        except TimeoutError:
            # The ledger's replica is being replaced (Ray holds calls until it is back):
            # serve without the limit rather than spend the request's budget waiting.
            log.warning("the caller ledger did not answer in %.1f s; serving without caller limits",
                        self.acquire_timeout_s)
            acquiring.add_done_callback(self._release_late)
        except asyncio.CancelledError:  # the lease may still be granted: give it back then
            acquiring.add_done_callback(self._release_late)
            raise
        try:
            yield lease
        finally:
            if lease.id is not None:
                await asyncio.shield(self._release(lease))  # cancelled again: the release goes on regardless

    def _release_late(self, acquiring: asyncio.Future) -> None:
        if not acquiring.cancelled() and acquiring.exception() is None:
            self._release(Lease(acquiring.result()))

    def _release(self, lease: Lease) -> asyncio.Task:
        task = asyncio.ensure_future(self._release_quietly(lease))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await self.ledger.release(lease.id, lease.tokens_used)
        except Exception as exc:  # the ledger reaps what it never hears back about
            log.warning("releasing a caller lease failed (%s); the ledger will reap it", type(exc).__name__)
