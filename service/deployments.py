"""The Ray Serve deployments, thin: each holds one part and answers over its handle.

- `generator`: holds the Generator (the vLLM engine), streams candidates;
- `scorer`: holds every configured RewardModel, batches scoring across requests;
- `ingress`: the FastAPI app of service.api over a Reranker of handle adapters
  (service.handles);
- `callers`: the CallerLedger itself (service.callers), one replica.

The classes are plain; `serve.deployment` is applied in service.app's `build_app`,
late, with the options from the config.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from service import metrics, node_metrics
from service.callers import CallerLimits, limits_of
from service.commit import CommitPlan
from service.config import GeneratorConfig, ScorerConfig, parse_config, parse_rewards
from service.errors import NotFound
from service.generator import make_generator
from service.handles import LedgerHandle, RemoteGenerator, ScoreJob, ScorerCatalog
from service.pruning import PruningPlan
from service.reward import RewardModel, make_reward_models
from service.serving import Reranker
from service.types import Deadline, Prompt, SamplingSpec, Scores

log = logging.getLogger(__name__)


class GeneratorServer:
    async def __init__(self, config: GeneratorConfig, scorer: DeploymentHandle):
        metrics.bind_to_node()
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


class ScorerServer:
    """Holds the reward models. They come in as the deployment's `user_config`, so
    `serve deploy` with new reward models reconfigures this replica in place and
    restarts nothing else (Ray Serve's lightweight update)."""

    def __init__(self, scorer: ScorerConfig):
        metrics.bind_to_node()
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


class Ingress:
    async def __init__(
        self, config_args: dict, generator: DeploymentHandle, scorer: DeploymentHandle, ledger: DeploymentHandle
    ):
        from service.api import create_api

        metrics.bind_to_node()
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
