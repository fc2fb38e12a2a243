"""A request's plan: everything decided about it before any candidate is sampled.

    plan = await planner.plan(request, arrived)          # checks, defaults, budget, schedules
    ticket = ...                                          # admission's word (service.admission)
    selection = await reranker.run(replace(plan, ticket=ticket))

The planner resolves a request against the config once: the reward model, how many
candidates for the load at hand (adaptive best_of), the latency budget, the ban list,
the pruning schedule and a stream's commit point. Admission then puts it on the
books and hands back a `Ticket` (how many candidates it may really run, what was
running, the caller's lease); the plan itself is not rebuilt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable

from service.budget import Budget
from service.commit import NEVER, CommitPlan
from service.config import ServiceConfig
from service.errors import NotFound
from service.lexicon import ban_words
from service.partials import Curve, PartialOffsets
from service.protocol import PruningRequest, RerankRequest, reject
from service.pruning import Branching, PruningPlan
from service.ranking import Ranking
from service.types import Prompt, SamplingSpec

if TYPE_CHECKING:
    from service.callers import Lease
    from service.generator.base import Generator
    from service.reward.catalog import RewardCatalog


# No tokenizer packs more characters than this into a token on average: a prompt longer
# than the context times this cannot fit, whatever its tokens.
MAX_CHARS_PER_TOKEN = 32


class ScoringCost:
    """Seconds per scored text, per reward model name (a moving average of the
    reward calls seen), so generation stops early enough to score the texts at
    hand. One per process, owned by its Reranker; a test can read or preset it."""

    def __init__(self, weight: float = 0.3, floor_s: float = 0.15):
        self.weight = weight
        self.floor_s = floor_s  # kept back even before anything was measured
        self.per_text: dict[str, float] = {}

    def observe(self, reward_model: str, calls: Iterable) -> None:
        """Learn from a request's reward calls (ScoreCalls, or (seconds, texts) pairs)."""
        for seconds, texts, *_ in calls:
            value = seconds / max(texts, 1)  # fixed per-call costs count in: an overestimate, on the safe side
            old = self.per_text.get(reward_model)
            self.per_text[reward_model] = value if old is None else old + self.weight * (value - old)

    def reserve(self, reward_model: str, texts: int) -> float:
        """Seconds to keep back from generation for scoring `texts` texts."""
        return max(self.floor_s, self.per_text.get(reward_model, 0.0) * texts)


@dataclass(frozen=True)
class Ticket:
    """Admission's word on a plan, for as long as the request runs."""

    candidates: int  # sampled: the plan's, or fewer when not all would finish by the deadline
    concurrency: int  # candidates admitted at once, these included, when it was taken on
    lease: Lease | None = None  # the caller's hold on its limits: run() reports the tokens used to it
    admitted_at: float | None = None  # wall clock


@dataclass(frozen=True)
class RerankPlan:
    """Everything decided about a request before any candidate is sampled."""

    reward_model: str
    best_of: int  # asked for (or the configured default)
    candidates: int  # what the plan is sized for: best_of, fewer while the generator is saturated
    n: int
    prompt: Prompt
    sampling: SamplingSpec
    budget: Budget
    pruning: PruningPlan | None
    return_candidates: bool = False
    floor: int = 1  # fewest candidates adaptive best_of and admission may leave it (and pruning too)
    commit: CommitPlan | None = None  # streams: when to commit to the leaders (service.commit)
    offsets: PartialOffsets | None = None  # how the reward model overrates cut texts (service.partials)
    min_chars: int = 1  # fewer characters besides whitespace: degenerate (service.ranking)
    engine_load: int = 0  # candidates the generator was running when the plan was sized (admission's too)
    ticket: Ticket | None = None  # set once admission took it on

    @property
    def effective_best_of(self) -> int:
        """Candidates sampled: the ticket's, once admitted."""
        return self.candidates if self.ticket is None else self.ticket.candidates

    @property
    def admitted_at(self) -> float | None:
        """Wall clock: admission took it on (None: not admitted)."""
        return self.ticket.admitted_at if self.ticket else None

    @property
    def ranking(self) -> Ranking:
        """How its candidates rank at selection: the texts are final there (JSON must parse)."""
        return Ranking(self.min_chars, self.offsets, self.sampling.wants_json)

    @property
    def max_tokens(self) -> int:
        return self.sampling.max_tokens

    @property
    def token_allowance(self) -> int:
        """The most tokens the request may use, prompt included (about 4 characters a
        token: the prompt is tokenized only in the generator), for caller limits."""
        return self.prompt.characters // 4 + 1 + self.best_of * self.max_tokens


def adaptive_best_of(best_of: int, floor: int, saturation: int, load: int) -> int:
    """Fewer candidates while the generator is saturated, so budgets still hold: what is
    left below `saturation` candidates running, never fewer than `floor` (0: no limit)."""
    if not saturation or saturation - load >= best_of:
        return best_of
    return min(best_of, max(floor, saturation - load))


class Planner:
    """Turns a request into its plan, against the config."""

    def __init__(self, config: ServiceConfig, generator: Generator, catalog: RewardCatalog,
                 scoring_cost: ScoringCost):
        self.config, self.limits = config, config.limits
        self.generator, self.catalog, self.scoring_cost = generator, catalog, scoring_cost
        # Every request with a ban list reads its words: resolved once (service.lexicon).
        self.bans = {name: ban_words(bans.words, bans.lexicon) for name, bans in config.bans.items()}

    async def plan(self, request: RerankRequest, arrived: float | None = None) -> RerankPlan:
        """Resolve defaults and check the request against the configured limits; the
        budget counts from `arrived` (wall clock; now if not given). The generator's load
        is read once, after the checks (a request at fault hears so, even while the
        generator is down), and sizes adaptive best_of."""
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
        self.check_prompt_size(prompt)
        if prompt.text is None and prompt.token_ids:  # the reward models read text
            prompt = replace(prompt, text=await self.generator.detokenize(prompt.token_ids))
        floor = self.floor(request.n)
        load = await self.generator.load()
        candidates = adaptive_best_of(best_of, floor, limits.saturation_candidates, load)
        offsets = PartialOffsets.of(self.config.partial_offsets.get(reward_model))
        return RerankPlan(
            reward_model=reward_model,
            best_of=best_of,
            candidates=candidates,
            n=request.n,
            prompt=replace(prompt, max_tokens=max_tokens),
            sampling=self.with_bans(request.sampling(max_tokens), request.bans),
            budget=Budget.starting(arrived, budget_ms, response_margin_s=limits.response_margin_ms / 1000.0,
                                   scoring_reserve_s=self.scoring_cost.reserve(reward_model, candidates)),
            pruning=self.pruning_plan(request, candidates, reward_model, floor),
            return_candidates=request.return_candidates,
            floor=floor,
            commit=self.commit_plan(request, reward_model, offsets),
            offsets=offsets,
            min_chars=limits.min_answer_chars,
            engine_load=load,
        )

    def check_prompt_size(self, prompt: Prompt) -> None:
        """Cheap checks first: a prompt that cannot fit the model's context is refused before
        anything decodes or tokenizes it (the generator checks the exact count after)."""
        context = self.generator.max_model_len
        if prompt.token_ids is not None and len(prompt.token_ids) >= context:
            raise reject("prompt", f"the prompt is {len(prompt.token_ids)} tokens; this model's context is {context}",
                         code="context_length_exceeded")
        param = "messages" if prompt.messages is not None else "prompt"
        if prompt.token_ids is None and prompt.characters > context * MAX_CHARS_PER_TOKEN:
            raise reject(param, f"the prompt is {prompt.characters} characters: more than this model's context of "
                         f"{context} tokens can hold", code="context_length_exceeded")

    def floor(self, n: int) -> int:
        """The fewest candidates a request of n choices runs: the one floor of adaptive
        best_of, admission and pruning."""
        return max(self.limits.best_of_floor, self.limits.min_candidates, n)

    def with_bans(self, sampling: SamplingSpec, asked: str | bool | None) -> SamplingSpec:
        """The request's bad_words plus its ban list's (a name, false for none, or the default)."""
        name = self.config.default_bans if asked is None or asked is True else (asked or None)
        if name is None:
            return sampling
        if name not in self.bans:
            raise NotFound(f"bans {name!r} is not a configured ban list", param="bans", code="bans_not_found")
        # Each list holds at most MAX_BAD_WORDS; what the engine can take of both, the generator says.
        return replace(sampling, bad_words=tuple(dict.fromkeys(sampling.bad_words + self.bans[name])))

    def pruning_plan(self, request: RerankRequest, candidates: int, reward_model: str,
                     floor: int) -> PruningPlan | None:
        """The request's pruning schedule: its own, the configured one, or none."""
        configured, asked = self.config.pruning, request.pruning
        wanted = asked.enabled if asked is not None else configured.enabled and candidates >= configured.min_best_of
        if not wanted:
            return None
        common = dict(floor=floor, reward_model=reward_model, ranking=Ranking(self.limits.min_answer_chars))
        rule = self.pruning_rule(asked, candidates)
        if rule == "branch":
            branching = configured.branch_rule
            if branching is None:
                raise reject("pruning.rule", "the branch rule is not configured here (pruning.branch_rule)")
            if request.stream:  # a stream commits to its leaders at one point: no branches after it
                raise reject("pruning.rule", "the branch rule does not apply to streams")
            return PruningPlan(checkpoints=(branching.at,), fraction=None, **common,
                               branch=Branching(branching.at, branching.leaders, branching.per_leader))
        if rule == "confidence":
            confident = configured.confidence_rule
            noise = confident.noise.get(reward_model) if confident else None
            if noise is not None:
                return PruningPlan(
                    checkpoints=tuple((asked and asked.checkpoints) or confident.checkpoints), fraction=None,
                    confidence=(asked and asked.confidence) or confident.confidence,
                    noise=Curve(tuple(noise.tokens), tuple(noise.spread)),
                    # Adaptive N only where nothing streams: a stream's commit judges every candidate at once.
                    first_wave=None if request.stream else confident.first_wave, grow_at=confident.grow_at, **common,
                )
            if asked is not None and (asked.rule or asked.confidence):
                raise reject("pruning.rule", f"the confidence rule needs the measured noise of reward model "
                             f"{reward_model!r} (pruning.confidence_rule.noise in the config); it has none")
        return PruningPlan(checkpoints=tuple((asked and asked.checkpoints) or configured.checkpoints),
                           fraction=(asked and asked.fraction) or configured.fraction, **common)

    def pruning_rule(self, asked: PruningRequest | None, candidates: int) -> str:
        """The rule the request names (or implies by its fields); else the config's for its size."""
        if asked is not None and asked.rule:
            return asked.rule
        if asked is not None and (asked.confidence or asked.fraction):
            return "confidence" if asked.confidence else "fraction"
        confident = self.config.pruning.confidence_rule
        return "confidence" if confident is not None and candidates >= confident.from_best_of else "fraction"

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
            leaders=request.n,
            reward_model=reward_model,
            ranking=Ranking(self.limits.min_answer_chars, offsets),
        )


def _check_cap(param: str, value: int, cap: int) -> None:
    if value > cap:
        raise reject(param, f"{param}: at most {cap}")
