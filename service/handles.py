"""Adapters over Ray Serve deployment handles: the interfaces the Reranker takes
(Generator, RewardCatalog, the caller ledger), each answering over a handle, and the
translation of Ray's errors into the client's.

A dead or full replica becomes a 503 with Retry-After (never a 500); an APIError
raised in another replica reaches the client with its own status and envelope; a
deployment that stopped answering is known from a background probe, so requests
are refused (or scored by the fallback) at once instead of waiting on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from ray.exceptions import NodeDiedError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from service.errors import APIError, Overloaded, find_api_error, find_cause
from service.generator import Generator
from service.reward import RewardModel
from service.reward.catalog import RewardSet
from service.types import Candidate, Prompt, Scores

log = logging.getLogger(__name__)


# Ray's ways of saying that a replica is gone, being replaced, or full: the client
# may retry, so a 503 with Retry-After, never a 500.
REPLICA_UNAVAILABLE = (RayActorError, NodeDiedError, BackPressureError, DeploymentUnavailableError,
                       ReplicaUnavailableError)
# A hint, not a prediction: about the time Ray takes to notice a dead replica and
# start another (an engine that loads weights takes longer; clients back off).
REPLICA_RETRY_AFTER_S = 5


def client_error(exc: BaseException) -> APIError | None:
    """What a client should see for an error that came from another replica."""
    error = find_api_error(exc)
    if error is not None:
        return error
    ray_error = find_cause(exc, REPLICA_UNAVAILABLE)
    if ray_error is None:
        return None
    wait_s = getattr(ray_error, "retry_after_s", None) or REPLICA_RETRY_AFTER_S
    return Overloaded("a part of the service is unavailable or full; retry shortly", code="replica_unavailable",
                      retry_after_s=wait_s)


@contextlib.contextmanager
def unwrapping_ray_errors():
    """Errors from other replicas arrive wrapped by Ray: re-raise an APIError bare,
    so the client gets its status and envelope, and a dead or full replica as a
    503; anything else stays as it is (a 500)."""
    try:
        yield
    except Exception as exc:
        error = client_error(exc)
        if error is None or error is exc:
            raise
        raise error from None


@dataclass(frozen=True)
class ScoreJob:
    """One request's texts for the scorer deployment to score with one reward model."""

    reward_model: str
    prompt: Prompt
    completions: tuple[str, ...]


class Probe:
    """A deployment's liveness and latest reading, refreshed in the background so
    that no request waits on it.

    A call to a deployment whose only replica died does not fail: Ray holds it
    until a replacement is up, which would spend the caller's whole budget. The
    probe reads the deployment every `every_s`; a read that fails or takes longer
    than `timeout_s` marks it down, so requests are refused (or scored by the
    fallback) at once until a read succeeds again.
    """

    def __init__(self, read: Callable[[], Awaitable[Any]], value: Any = None, every_s: float = 0.2,
                 timeout_s: float = 1.0):
        self.read, self.value, self.every_s, self.timeout_s = read, value, every_s, timeout_s
        self.read_at = time.monotonic()  # when the read that gave `value` was sent
        self.down = False
        self.task: asyncio.Task | None = None

    def poll(self) -> None:
        """Keep reading in the background from now on (every `every_s`; 0.5 s while down),
        so that a death is known before the next request needs to know it."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.keep_reading())

    async def keep_reading(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(min(self.every_s, 0.5) if self.down else self.every_s)

    async def refresh(self) -> None:
        try:
            sent = time.monotonic()
            self.value, self.read_at = await asyncio.wait_for(self.read(), self.timeout_s), sent
            self.down = False
        except Exception as exc:  # timed out, unavailable, or failing: down until a read succeeds
            if not self.down:
                log.warning("%s: down (%s)", getattr(self.read, "__qualname__", "probe"), type(exc).__name__)
            self.down = True

    def mark_down(self) -> None:
        """A call failed for want of a replica: down until the next read succeeds."""
        self.down = True


def unavailable(part: str) -> Overloaded:
    return Overloaded(f"the {part} is unavailable (a replica is being replaced); retry shortly",
                      code="replica_unavailable", retry_after_s=REPLICA_RETRY_AFTER_S)


class RemoteGenerator(Generator):
    """The Generator interface over a handle to the generator deployment."""

    def __init__(self, handle: DeploymentHandle, info: dict[str, Any]):
        self.handle = handle
        self.model_name = info["model_name"]
        self.max_model_len = info["max_model_len"]
        # The running candidates, read in the background every 0.2 s: no round trip on the hot path.
        self.probe = Probe(self.read_load, value=0)
        # When this ingress's candidates ended: a reading counts ours that ended since it was sent.
        self.ended: collections.deque[float] = collections.deque(maxlen=4096)

    async def read_load(self) -> int:
        with unwrapping_ray_errors():
            return await self.handle.load.remote()

    async def generate(self, prompt, sampling, n, deadline, pruning=None, commit=None) -> AsyncIterator[Candidate]:
        if self.probe.down:
            raise unavailable("generator")
        stream = self.handle.options(stream=True).generate.remote(prompt, sampling, n, deadline, pruning, commit)
        try:
            with unwrapping_ray_errors():
                async for event in stream:
                    if isinstance(event, Candidate):  # finished, pruned or cut: it runs no more
                        self.ended.append(time.monotonic())
                    yield event
        finally:
            # Client gone or caller done: cancel on the replica, which aborts in the engine.
            stream.cancel()

    async def check_ready(self) -> None:
        with unwrapping_ray_errors():
            await self.handle.check_ready.remote()

    async def detokenize(self, token_ids) -> str:
        if self.probe.down:
            raise unavailable("generator")
        with unwrapping_ray_errors():
            return await self.handle.detokenize.remote(tuple(token_ids))

    async def load(self) -> int:
        """The last reading, less this ingress's candidates that ended since it was sent
        (up to 0.2 s old, it still counts a request that just finished: a client sending
        one request after another would see its best_of cut by adaptive best_of).
        Admission calls this first: a dead generator is a 503 at once."""
        self.probe.poll()
        if self.probe.down:
            raise unavailable("generator")
        since = self.probe.read_at
        ended = sum(1 for _ in itertools.takewhile(lambda t: t >= since, reversed(self.ended)))
        return max(0, self.probe.value - ended)


class ScorerCatalog:
    """The scorer's current reward models, re-read in the background every `ttl_s`.

    While the scorer cannot answer (a replica being replaced), the last set read
    stays listed and its models refuse at once (503), so requests are scored by
    the fallback reward rather than waiting for the replacement; the first read
    has nothing to fall back on and is awaited.
    """

    def __init__(self, handle: DeploymentHandle, ttl_s: float = 2.0, read_timeout_s: float = 1.0):
        self.handle = handle
        self.probe = Probe(self.read_info, every_s=ttl_s, timeout_s=read_timeout_s)
        self.cached: RewardSet | None = None
        self.cached_from: dict | None = None

    async def read_info(self) -> dict:
        with unwrapping_ray_errors():
            return await self.handle.info.remote()

    @property
    def down(self) -> bool:
        return self.probe.down

    async def current(self) -> RewardSet:
        if self.probe.value is None:
            await self.probe.refresh()
            if self.probe.value is None:
                raise unavailable("scorer")
        else:
            self.probe.poll()
        info = self.probe.value
        if info != self.cached_from:
            models = {name: ScorerHandleReward(self, name, kind) for name, kind in info["kinds"].items()}
            self.cached, self.cached_from = RewardSet(models, info["default"]), info
        return self.cached


class ScorerHandleReward(RewardModel):
    """One configured reward model, scored by the scorer deployment."""

    def __init__(self, catalog: ScorerCatalog, name: str, kind: str):
        self.catalog, self.name, self.kind = catalog, name, kind

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        if self.catalog.down:
            raise unavailable("scorer")
        try:
            with unwrapping_ray_errors():
                return await self.catalog.handle.score.remote(ScoreJob(self.name, prompt, tuple(completions)))
        except Overloaded as exc:
            if exc.code == "replica_unavailable":  # later requests go straight to the fallback
                self.catalog.probe.mark_down()
            raise


class LedgerHandle:
    """The caller ledger (service.callers.CallerLedger) over a handle to its deployment."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def acquire(self, caller: str, tokens: int, expected_end: float) -> str:
        with unwrapping_ray_errors():
            return await self.handle.acquire.remote(caller, tokens, expected_end)

    async def release(self, lease: str, tokens_used: int | None = None) -> None:
        with unwrapping_ray_errors():
            await self.handle.release.remote(lease, tokens_used)
