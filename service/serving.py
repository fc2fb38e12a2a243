"""The request path as one object: a `Reranker` plans a request, then runs it.

    async with reranker.admit(request, arrived) as plan:   # checks, budget, admission: a frozen RerankPlan
        selection = await reranker.run(plan)               # best-of-N within the budget, metrics recorded

The HTTP routes, the benchmarks and the tests all go through these two calls, so
what is measured is what is served. The Reranker knows nothing about Ray or
HTTP: it is given a Generator and a RewardCatalog (in the Ray app, adapters over
deployment handles; in one process, the models themselves).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import AsyncIterator

from service import metrics
from service.admission import Capacity
from service.callers import CallerLedger, CallerLimits, TooManyRequests, limits_of
from service.config import ServiceConfig
from service.errors import BudgetExhausted
from service.generator import make_generator
from service.generator.base import Generator
from service.plan import Planner, RerankPlan, ScoringCost
from service.protocol import RerankRequest
from service.reward import make_reward_model, make_reward_models
from service.reward.catalog import RewardCatalog, StaticCatalog
from service.selection import Commit, Piece, Selection, rerank

# The caller's limit a 429 was about, as counted in prune_refused_total{reason}.
CALLER_REFUSALS = {"concurrency_limit": "caller_concurrency", "tokens_per_minute": "caller_tokens"}


class Reranker:
    def __init__(
        self,
        config: ServiceConfig,
        generator: Generator,
        catalog: RewardCatalog,
        scoring_cost: ScoringCost | None = None,
        callers: CallerLimits | None = None,
    ):
        self.config, self.limits = config, config.limits
        self.generator, self.catalog = generator, catalog
        self.scoring_cost = scoring_cost or ScoringCost()
        self.planner = Planner(config, generator, catalog, self.scoring_cost)
        self.capacity = Capacity(config.admission, saturation_candidates=config.limits.saturation_candidates)
        # Caller limits: the books are this process's unless shared ones are given (the Ray app's ledger).
        self.callers = callers or CallerLimits(CallerLedger(limits_of(config.callers)))
        # Local to this process: it must work when the scorer deployment does not.
        self.fallback = make_reward_model(config.fallback_reward) if config.fallback_reward else None

    async def plan(self, request: RerankRequest, arrived: float | None = None) -> RerankPlan:
        """The request's plan, not admitted (benchmarks and tests run it as it is)."""
        return await self.planner.plan(request, arrived)

    @contextlib.asynccontextmanager
    async def admit(
        self, request: RerankRequest, arrived: float | None = None, caller: str | None = None
    ) -> AsyncIterator[RerankPlan]:
        """Plan the request and take it on for the duration of the block, or refuse it
        at once: 429 + Retry-After past the caller's own limits, 503 + Retry-After when
        it cannot be answered by its deadline. The plan comes with admission's ticket."""
        plan = await self.planner.plan(request, arrived)  # the generator's load, read once, sizes it and the books
        try:
            async with self.callers.hold(caller, plan.token_allowance, plan.budget.answer_by.at) as lease:
                lease.used(0)  # refused for capacity: every token comes back to the caller
                with self.capacity.reserve(plan, plan.engine_load) as ticket:  # nothing awaited since the decision
                    lease.used(None)  # all of them unless run() reports what was used
                    admitted = replace(plan, ticket=replace(ticket, lease=lease, admitted_at=time.time()))
                    if admitted.effective_best_of < plan.best_of:  # adaptive best_of, counted once per request
                        metrics.ADAPTIVE_REDUCTIONS.inc()
                    yield admitted
        except TooManyRequests as refused:
            metrics.REFUSED.labels(CALLER_REFUSALS.get(refused.code, "caller")).inc()
            raise

    async def run(self, plan: RerankPlan) -> Selection:
        """Sample, prune and select within the plan's budget; raises BudgetExhausted (504)."""
        async for event in self.run_stream(plan):
            selection = event
        return selection

    async def run_stream(self, plan: RerankPlan) -> AsyncIterator[Commit | Piece | Selection]:
        """`run` as events: a stream's Commit and Pieces as they come, then the Selection."""
        reward = (await self.catalog.current()).get(plan.reward_model)
        events = rerank(self.generator, reward, plan, self.fallback)
        try:
            async for event in events:
                if isinstance(event, Commit):
                    metrics.STREAM_COMMIT_TOKENS.observe(event.at_tokens)
                    metrics.STREAM_COMMIT_SECONDS.observe(event.at_ms / 1000)
                if not isinstance(event, Selection):
                    yield event
                selection = event
        except BudgetExhausted:
            metrics.BUDGET_EXHAUSTED.inc()
            metrics.BUDGET_CUTOFFS.inc()
            raise
        finally:
            await events.aclose()
        if plan.ticket is not None and plan.ticket.lease is not None:
            plan.ticket.lease.used(selection.prompt_tokens + selection.completion_tokens)
        self.scoring_cost.observe(plan.reward_model, selection.score_calls)
        self.capacity.observe(plan, selection)
        record(plan, selection)
        yield selection


def record(plan: RerankPlan, selection: Selection) -> None:
    """The metrics of one answered request."""
    name = plan.reward_model
    metrics.BEST_OF.observe(plan.effective_best_of)
    metrics.GENERATE_LATENCY.observe(selection.generate_s)
    metrics.SCORE_LATENCY.observe(selection.score_s)
    metrics.CANDIDATES_GENERATED.inc(selection.candidates_generated)
    metrics.CANDIDATES_SCORED.inc(len(selection.scored))
    metrics.COMPLETION_TOKENS.inc(selection.completion_tokens)
    if selection.stopped_early:
        metrics.BUDGET_CUTOFFS.inc()
    if selection.degraded:  # the fallback scored, on its own scale: not the request's model's rewards
        metrics.DEGRADED.labels(selection.degraded).inc()
        return
    metrics.CHOSEN_REWARD.labels(name).observe(selection.chosen[0].score)
    for sc in selection.scored:
        metrics.CANDIDATE_REWARD.labels(name).observe(sc.score)
    metrics.REWARD_MARGIN.labels(name).observe(selection.margin)
    metrics.REWARD_UPLIFT.labels(name).observe(selection.uplift)


async def local_reranker(config: ServiceConfig) -> Reranker:
    """The whole request path in one process, no Ray: the config's generator and
    reward models, pruning judged by the same models. Benchmarks measure this
    against the service."""
    models = make_reward_models(config.reward_models)
    for model in models.values():
        await model.start()
    catalog = StaticCatalog(models, config.default_reward_model)
    generator = make_generator(config.generator, judge=catalog)
    await generator.start()
    return Reranker(config, generator, catalog)
