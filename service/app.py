"""Ray Serve deployments and `build_app`, the application builder named in deploy/*.yaml.

Three thin deployments, each scaled on its own:
- `generator`: holds the Generator (the vLLM engine), streams candidates;
- `scorer`: holds every configured RewardModel, batches scoring across requests;
- `ingress`: the FastAPI app of service.api, talking to the others by handle.

The classes are plain; `serve.deployment` is applied in `build_app`, late, with
the options from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

from ray import serve
from ray.exceptions import NodeDiedError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from service import metrics, node_metrics
from service.callers import CallerLedger, CallerLimits, limits_of
from service.commit import CommitPlan
from service.config import GeneratorConfig, ScorerConfig, ServiceConfig, cache_dir, parse_config, parse_rewards
from service.errors import APIError, NotFound, Overloaded, find_api_error, find_cause, retry_after
from service.generator import Generator, make_generator
from service.pruning import PruningPlan
from service.reward import RewardModel, make_reward_models
from service.reward.catalog import RewardSet
from service.serving import Reranker
from service.types import Candidate, Deadline, Prompt, SamplingSpec, Scores

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
                      headers=retry_after(wait_s))


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


class GeneratorServer:
    async def __init__(self, config: GeneratorConfig, scorer: DeploymentHandle):
        node_metrics.serve_node_metrics(metrics.node_registry)
        # Requests that prune have their partial texts judged by the scorer deployment.
        self.generator = make_generator(config, judge=ScorerCatalog(scorer))
        await self.generator.start()

    def info(self) -> dict[str, Any]:
        return {"model_name": self.generator.model_name, "max_model_len": self.generator.max_model_len}

    async def generate(
        self, prompt: Prompt, sampling: SamplingSpec, n: int, deadline: Deadline,
        pruning: PruningPlan | None = None, commit: CommitPlan | None = None,
    ):
        async for event in self.generator.generate(prompt, sampling, n, deadline, pruning, commit):
            yield event

    async def check_ready(self) -> None:
        await self.generator.check_ready()

    async def detokenize(self, token_ids: tuple[int, ...]) -> str:
        return await self.generator.detokenize(token_ids)

    async def load(self) -> int:
        return await self.generator.load()

    async def check_health(self) -> None:  # called by Ray Serve; raising restarts the replica
        await self.generator.check_ready()

    def __del__(self):
        if hasattr(self, "generator"):  # not when __init__ failed before building it
            self.generator.shutdown()


@dataclass(frozen=True)
class ScoreJob:
    reward_model: str
    prompt: Prompt
    completions: tuple[str, ...]


class ScorerServer:
    """Holds the reward models. They come in as the deployment's `user_config`, so
    `serve deploy` with new reward models reconfigures this replica in place and
    restarts nothing else (Ray Serve's lightweight update)."""

    def __init__(self, scorer: ScorerConfig):
        node_metrics.serve_node_metrics(metrics.node_registry)
        self.models: dict[str, RewardModel] = {}
        self.default = ""
        self.score_jobs.set_max_batch_size(scorer.max_batch_size)
        self.score_jobs.set_batch_wait_timeout_s(scorer.batch_wait_timeout_s)

    async def reconfigure(self, user_config: dict) -> None:
        rewards = parse_rewards(user_config)  # a bad config fails the deploy; the old models stay
        models = make_reward_models(rewards.reward_models)
        for model in models.values():
            await model.start()
        self.models, self.default = models, rewards.default_reward_model
        log.info("reward models: %s (default %s)", ", ".join(models), self.default)

    def info(self) -> dict[str, Any]:
        return {"default": self.default, "kinds": {name: model.kind for name, model in self.models.items()}}

    async def score(self, job: ScoreJob) -> Scores:
        if job.reward_model not in self.models:  # removed by a reconfigure since the ingress looked
            raise NotFound(f"reward_model {job.reward_model!r} is not configured", param="reward_model",
                           code="reward_model_not_found")
        return await self.score_jobs(job)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def score_jobs(self, jobs: list[ScoreJob]) -> list[Scores]:
        """Concurrent requests' jobs arrive together; each model scores its share at once."""
        metrics.SCORER_BATCH_SIZE.observe(sum(len(job.completions) for job in jobs))
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            by_model[job.reward_model].append(i)
        results: list[Scores | None] = [None] * len(jobs)
        for name, indexes in by_model.items():
            batch = [(jobs[i].prompt, jobs[i].completions) for i in indexes]
            for i, scores in zip(indexes, await self.models[name].score_many(batch)):
                results[i] = scores
        return results


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
            self.value = await asyncio.wait_for(self.read(), self.timeout_s)
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
                      code="replica_unavailable", headers=retry_after(REPLICA_RETRY_AFTER_S))


class RemoteGenerator(Generator):
    """The Generator interface over a handle to the generator deployment."""

    def __init__(self, handle: DeploymentHandle, info: dict[str, Any]):
        self.handle = handle
        self.model_name = info["model_name"]
        self.max_model_len = info["max_model_len"]
        # The running candidates, read in the background every 0.2 s: no round trip on the hot path.
        self.probe = Probe(self.read_load, value=0)

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
        """The last reading (admission calls this first: a dead generator is a 503 at once)."""
        self.probe.poll()
        if self.probe.down:
            raise unavailable("generator")
        return self.probe.value


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


class Ingress:
    async def __init__(
        self, config_args: dict, generator: DeploymentHandle, scorer: DeploymentHandle, ledger: DeploymentHandle
    ):
        from service.api import create_api

        node_metrics.serve_node_metrics(metrics.node_registry)
        config = parse_config(config_args)
        remote_generator = RemoteGenerator(generator, await generator.info.remote())
        # One ledger for every ingress replica: per-replica counters would multiply each caller's limits.
        limited = set(limits_of(config.callers))
        callers = CallerLimits(LedgerHandle(ledger), limited=limited)
        reranker = Reranker(config, remote_generator, ScorerCatalog(scorer), callers=callers)
        self.api = create_api(reranker, metrics_targets=lambda: asyncio.to_thread(node_metrics.targets))

    def __serve_build_asgi_app__(self):
        return self.api


def metrics_dir(config: ServiceConfig) -> Path:
    return Path(config.metrics_dir) if config.metrics_dir else cache_dir() / "metrics"


def build_app(args: dict[str, Any]) -> serve.Application:
    """Build the prune application from the `args` of a deploy/*.yaml file."""
    config = parse_config(args)
    folder = metrics_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    # Every replica writes its metrics into its node's subfolder; the node's exporter
    # (and the ingress's /metrics, for its own node) merge them (service.node_metrics).
    # Ray starts workers at nice 15, which on a small machine puts the engine behind
    # Ray's own housekeeping: replicas run at their deployment's niceness (default 0).
    def runtime_env(niceness: int) -> dict[str, Any]:
        return {"env_vars": {node_metrics.FOLDER_ENV: str(folder), node_metrics.PORT_ENV: str(config.metrics_port),
                             "RAY_worker_niceness": str(niceness)}}

    def options(deployment_config) -> dict[str, Any]:
        opts = deployment_config.ray_options()
        opts["ray_actor_options"]["runtime_env"] = runtime_env(deployment_config.niceness)
        return opts

    scorer = (
        serve.deployment(ScorerServer, name="scorer")
        .options(**options(config.scorer), user_config=config.rewards().model_dump(mode="json"))
        .bind(config.scorer)
    )
    generator = (
        serve.deployment(GeneratorServer, name="generator")
        .options(**options(config.generator_deployment), health_check_period_s=10)
        .bind(config.generator, scorer)
    )
    # Small, and its state must be one: exactly one replica, never autoscaled.
    ledger = (
        serve.deployment(CallerLedger, name="callers")
        .options(num_replicas=1, max_ongoing_requests=1000, max_queued_requests=1000,
                 ray_actor_options={"num_cpus": 0, "runtime_env": runtime_env(0)})
        .bind(limits_of(config.callers))
    )
    ingress = serve.deployment(serve.ingress()(Ingress), name="ingress").options(**options(config.ingress))
    # What was given, not every default: the ingress re-validates it, and a default written
    # out (num_replicas beside autoscaling) would read as given.
    return ingress.bind(config.model_dump(mode="json", exclude_unset=True), generator, scorer, ledger)
