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
from dataclasses import dataclass, replace
from typing import AsyncIterator, Iterable

from service import metrics
from service.admission import Capacity
from service.budget import Budget
from service.commit import NEVER, CommitPlan
from service.callers import CallerLedger, CallerLimits, Lease, TooManyRequests, limits_of
from service.config import ServiceConfig
from service.errors import BudgetExhausted, NotFound
from service.generator import make_generator
from service.generator.base import Generator
from service.protocol import RerankRequest, reject
from service.partials import PartialOffsets
from service.pruning import PruningPlan
from service.reward import make_reward_model, make_reward_models
from service.reward.catalog import RewardCatalog, StaticCatalog
from service.selection import Commit, Piece, ScoreCall, Selection, rerank
from service.types import Prompt, SamplingSpec


class ScoringCost:
    """Seconds per scored text, per reward model name (a moving average of the
    reward calls seen), so generation stops early enough to score the texts at
    hand. One per process, owned by its Reranker; a test can read or preset it."""

    def __init__(self, weight: float = 0.3, floor_s: float = 0.15):
        self.weight = weight
        self.floor_s = floor_s  # kept back even before anything was measured
        self.per_text: dict[str, float] = {}

    def observe(self, reward_model: str, calls: Iterable[ScoreCall]) -> None:
        """Learn from a request's reward calls."""
        for seconds, texts, *_ in calls:  # ScoreCall, or (seconds, texts)
            value = seconds / max(texts, 1)  # fixed per-call costs count in: an overestimate, on the safe side
            old = self.per_text.get(reward_model)
            self.per_text[reward_model] = value if old is None else old + self.weight * (value - old)

    def reserve(self, reward_model: str, texts: int) -> float:
        """Seconds to keep back from generation for scoring `texts` texts."""
        return max(self.floor_s, self.per_text.get(reward_model, 0.0) * texts)


@dataclass(frozen=True)
class RerankPlan:
    """Everything decided about a request before any candidate is sampled."""

    reward_model: str
    best_of: int  # asked for (or the configured default)
    effective_best_of: int  # sampled: fewer than best_of when the generator is saturated
    n: int
    prompt: Prompt
    sampling: SamplingSpec
    budget: Budget
    pruning: PruningPlan | None
    return_candidates: bool = False
    floor: int = 1  # fewest candidates adaptive best_of and admission may leave it
    concurrency: int = 0  # candidates admitted at once, this request's included, when it was taken on
    lease: Lease | None = None  # the caller's hold on its limits: run() reports the tokens used to it
    commit: CommitPlan | None = None  # streams: when to commit to the leaders (service.commit)
    offsets: PartialOffsets | None = None  # how the reward model overrates cut texts (service.partials)
    admitted_at: float | None = None  # wall clock: admission took it on

    @property
    def max_tokens(self) -> int:
        return self.sampling.max_tokens

    @property
    def token_allowance(self) -> int:
        """The most tokens the request may use, prompt included (about 4 characters a
        token: the prompt is tokenized only in the generator), for caller limits."""
        return self.prompt.characters // 4 + 1 + self.best_of * self.max_tokens


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
        self.capacity = Capacity(config.admission, saturation_candidates=config.limits.saturation_candidates)
        # Caller limits: the books are this process's unless shared ones are given (the Ray app's ledger).
        self.callers = callers or CallerLimits(CallerLedger(limits_of(config.callers)))
        # Local to this process: it must work when the scorer deployment does not.
        self.fallback = make_reward_model(config.fallback_reward) if config.fallback_reward else None

    async def plan(self, request: RerankRequest, arrived: float | None = None) -> RerankPlan:
        """Resolve defaults and check the request against the configured limits; the
        budget counts from `arrived` (wall clock; now if not given)."""
        arrived = time.time() if arrived is None else arrived
        limits = self.limits
        if request.model != self.generator.model_name:
            raise NotFound(f"model {request.model!r} does not exist; try GET /v1/models", param="model",
                           code="model_not_found")
        reward_model = (await self.catalog.current()).resolve(request.reward_model)
        best_of = request.best_of or max(limits.best_of_default, request.n)
        _check_cap("best_of", best_of, limits.best_of_max)
        if request.n > best_of:
            raise reject("n", f"n ({request.n}) must not exceed best_of ({best_of})")
        max_tokens = request.requested_max_tokens() or limits.max_tokens_default
        _check_cap("max_tokens", max_tokens, limits.max_tokens_max)
        budget_ms = request.latency_budget_ms or limits.latency_budget_ms_default
        _check_cap("latency_budget_ms", budget_ms, limits.latency_budget_ms_max)
        prompt = request.to_prompt()
        if prompt.text is None and prompt.token_ids:  # the reward models read text
            prompt = replace(prompt, text=await self.generator.detokenize(prompt.token_ids))
        effective = await self.effective_best_of(best_of, request.n)
        budget = Budget.starting(
            arrived,
            budget_ms,
            response_margin_s=limits.response_margin_ms / 1000.0,
            scoring_reserve_s=self.scoring_cost.reserve(reward_model, effective),
        )
        offsets = PartialOffsets.of(self.config.partial_offsets.get(reward_model))
        return RerankPlan(
            reward_model=reward_model,
            best_of=best_of,
            effective_best_of=effective,
            n=request.n,
            prompt=replace(prompt, max_tokens=max_tokens),
            sampling=self.with_bans(request.sampling(max_tokens), request.bans),
            budget=budget,
            pruning=self.pruning_plan(request, effective, reward_model),
            return_candidates=request.return_candidates,
            floor=self.floor(request.n),
            commit=self.commit_plan(request, reward_model, offsets),
            offsets=offsets,
        )

    def with_bans(self, sampling: SamplingSpec, asked: str | bool | None) -> SamplingSpec:
        """The request's bad_words plus its ban list's (a name, false for none, or the default)."""
        name = self.config.default_bans if asked is None or asked is True else (asked or None)
        if name is None:
            return sampling
        if name not in self.config.bans:
            raise NotFound(f"bans {name!r} is not a configured ban list", param="bans", code="bans_not_found")
        # Each list holds at most MAX_BAD_WORDS; what the engine can take of both, the generator says.
        return replace(sampling, bad_words=tuple(dict.fromkeys(sampling.bad_words + self.config.bans[name].resolve())))

    @contextlib.asynccontextmanager
    async def admit(
        self, request: RerankRequest, arrived: float | None = None, caller: str | None = None
    ) -> AsyncIterator[RerankPlan]:
        """Plan the request and take it on for the duration of the block, or refuse it
        at once: 429 + Retry-After past the caller's own limits, 503 + Retry-After when
        it cannot be answered by its deadline."""
        plan = await self.plan(request, arrived)
        try:
            async with self.callers.hold(caller, plan.token_allowance, plan.budget.answer_by.at) as lease:
                lease.used(0)  # refused for capacity: every token comes back to the caller
                engine_load = await self.generator.load()
                with self.capacity.reserve(plan, engine_load) as admitted:  # nothing awaited since the decision
                    lease.used(None)  # all of them unless run() reports what was used
                    yield replace(admitted, lease=lease, admitted_at=time.time())
        except TooManyRequests as refused:
            metrics.REFUSED.labels(CALLER_REFUSALS.get(refused.code, "caller")).inc()
            raise

    def floor(self, n: int) -> int:
        return max(self.limits.best_of_floor, self.limits.min_candidates, n)

    async def effective_best_of(self, best_of: int, n: int) -> int:
        """Fewer candidates when the generator is saturated, so budgets still hold."""
        limits = self.limits
        if not limits.saturation_candidates:
            return best_of
        room = limits.saturation_candidates - await self.generator.load()
        if room >= best_of:
            return best_of
        metrics.ADAPTIVE_REDUCTIONS.inc()
        return min(best_of, max(self.floor(n), room))

    def pruning_plan(self, request: RerankRequest, best_of: int, reward_model: str) -> PruningPlan | None:
        """The request's pruning schedule: its own, the configured one, or none."""
        configured, asked = self.config.pruning, request.pruning
        wanted = asked.enabled if asked is not None else configured.enabled and best_of >= configured.min_best_of
        if not wanted:
            return None
        return PruningPlan(
            checkpoints=tuple((asked and asked.checkpoints) or configured.checkpoints),
            fraction=(asked and asked.fraction) or configured.fraction,
            keep_at_least=max(request.n, self.limits.min_candidates),
            reward_model=reward_model,
        )

    def commit_plan(self, request: RerankRequest, reward_model: str, offsets: PartialOffsets | None) -> CommitPlan | None:
        """A stream's commit point: its own, or the configured one. Under `select` it is
        never reached, so only a stream with nothing to choose commits (at once)."""
        asked = request.stream_commit
        if not request.stream:
            if asked is not None:
                raise reject("stream_commit", "stream_commit applies to streams (stream: true)")
            return None
        if request.logprob_count() is not None:  # logprobs come with the chosen text: the stream waits for selection
            if asked is not None and asked.policy == "leader":
                raise reject("stream_commit", "stream_commit leader streams text before its logprobs are known; "
                             "with logprobs, a stream waits for selection")
            return None
        policy = asked.policy if asked is not None else self.config.streaming.commit
        at_tokens = (asked and asked.at_tokens) or self.config.streaming.commit_tokens
        return CommitPlan(
            at_tokens=at_tokens if policy == "leader" else NEVER,
            keep=request.n,
            reward_model=reward_model,
            offsets=offsets,
            min_chars=self.limits.min_answer_chars,
        )

    async def run(self, plan: RerankPlan) -> Selection:
        """Sample, prune and select within the plan's budget; raises BudgetExhausted (504)."""
        async for event in self.run_stream(plan):
            selection = event
        return selection

    async def run_stream(self, plan: RerankPlan) -> AsyncIterator[Commit | Piece | Selection]:
        """`run` as events: a stream's Commit and Pieces as they come, then the Selection."""
        reward = (await self.catalog.current()).get(plan.reward_model)
        events = rerank(
            self.generator,
            reward,
            plan.prompt,
            plan.sampling,
            best_of=plan.effective_best_of,
            n=plan.n,
            budget=plan.budget,
            pruning=plan.pruning,
            commit=plan.commit,
            fallback=self.fallback,
            min_chars=self.limits.min_answer_chars,
            offsets=plan.offsets,
        )
        try:
            async for event in events:
                if isinstance(event, Commit):
                    metrics.STREAM_COMMIT_TOKENS.observe(event.info.at_tokens)
                    metrics.STREAM_COMMIT_SECONDS.observe(event.info.at_ms / 1000)
                if not isinstance(event, Selection):
                    yield event
                selection = event
        except BudgetExhausted:
            metrics.BUDGET_EXHAUSTED.inc()
            metrics.BUDGET_CUTOFFS.inc()
            raise
        finally:
            await events.aclose()
        if plan.lease is not None:
            plan.lease.used(selection.prompt_tokens + selection.completion_tokens)
        self.scoring_cost.observe(plan.reward_model, selection.score_calls)
        self.capacity.observe(plan, selection)
        record(plan, selection)
        yield selection


def _check_cap(param: str, value: int, cap: int) -> None:
    if value > cap:
        raise reject(param, f"{param}: at most {cap}")


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
