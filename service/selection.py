"""Best-of-N selection as plain async code: no Ray, no HTTP.

Anytime: candidates are scored as they finish, in micro-batches (whatever
finished while the previous scoring call ran goes into the next one), so the
best-so-far is always known and little scoring is left when the deadline comes.
At the deadline the generator hands back the unfinished candidates' partial
texts; the best *finished* candidate wins, and only if none finished are the
partial ones scored. Identical texts count once; ties go to the earlier
candidate, so results are deterministic for a given set of candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass

from service.budget import Budget
from service.errors import APIError, BudgetExhausted
from service.generator.base import Generator
from service.pruning import PruningPlan
from service.reward.base import RewardModel
from service.types import Candidate, Deadline, Prompt, SamplingSpec, Scores, concat


@dataclass(frozen=True)
class ScoredCandidate:
    candidate: Candidate
    score: float


@dataclass(frozen=True)
class Selection:
    chosen: list[ScoredCandidate]  # best first, at most n, distinct texts
    scored: list[ScoredCandidate]  # every scored candidate, in generation order
    candidates_generated: int
    prompt_tokens: int
    completion_tokens: int  # every token of every candidate, aborted ones included
    stopped_early: bool  # the deadline cut at least one candidate (or its scoring) short
    candidates_pruned: int  # aborted early for scoring low at a checkpoint
    generate_s: float  # until the last candidate arrived
    score_calls: tuple[tuple[float, int], ...]  # (seconds, texts) of each reward call, in order
    degraded: str | None = None  # the fallback reward scored instead, and why

    @property
    def score_s(self) -> float:
        """Time spent in reward calls (overlaps generation)."""
        return sum(seconds for seconds, _ in self.score_calls)

    @property
    def margin(self) -> float:
        """Best minus median reward: how much choosing mattered."""
        return self.chosen[0].score - statistics.median(sc.score for sc in self.scored)

    @property
    def uplift(self) -> float:
        """Best minus the first candidate's reward: the gain over plain sampling."""
        first = min(self.scored, key=lambda sc: sc.candidate.index)
        return self.chosen[0].score - first.score


class _Scorer:
    """Scores distinct texts in micro-batches, one reward call at a time.

    With a `fallback` reward, a scorer that is unavailable (502/503) or has
    scored nothing when selection must end does not fail the request: from then
    on the fallback scores every candidate, those scored already included, so
    that all values share one scale; `degraded` says why.
    """

    def __init__(self, reward: RewardModel, prompt: Prompt, fallback: RewardModel | None = None):
        self.reward, self.prompt, self.fallback = reward, prompt, fallback
        self.batches: list[tuple[list[Candidate], Scores]] = []
        self.waiting: list[Candidate] = []
        self.scoring: list[Candidate] = []  # the batch of the reward call under way
        self.texts: set[str] = set()
        self.task: asyncio.Task | None = None
        self.calls: list[tuple[float, int]] = []  # (seconds, texts) of the request's reward model
        self.cut = False  # the deadline came before every candidate was scored
        self.degraded: str | None = None  # why the fallback scored instead: scorer_unavailable, scorer_slow

    def add(self, candidate: Candidate) -> None:
        key = candidate.text.strip()
        if key in self.texts:
            return
        self.texts.add(key)
        self.waiting.append(candidate)
        if self.task is not None and self.task.done():
            self.task.result()  # a failed reward call fails the request, never a silent zero
            self.task = None
        if self.task is None:
            self.task = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        """Score what is waiting; what arrives meanwhile forms the next batch."""
        while self.waiting:
            self.scoring, self.waiting = self.waiting, []
            started = time.perf_counter()
            try:
                scores = await self.reward.score(self.prompt, [c.text for c in self.scoring])
            except APIError as exc:
                if not exc.unavailable or self.fallback is None or self.degraded:
                    raise
                self.degrade("scorer_unavailable")
                continue
            if len(scores.values) != len(self.scoring):
                raise RuntimeError(f"reward model returned {len(scores.values)} scores for {len(self.scoring)} candidates")
            self.batches.append((self.scoring, scores))
            if not self.degraded:  # the request's reward model's cost, for the next requests' reserves
                self.calls.append((time.perf_counter() - started, len(self.scoring)))
            self.scoring = []

    def degrade(self, reason: str) -> None:
        """The fallback scores everything from now on, what was scored already too."""
        self.degraded, self.reward = reason, self.fallback
        self.waiting = [c for batch, _ in self.batches for c in batch] + self.scoring + self.waiting
        self.batches, self.scoring = [], []

    async def drain(self, aim: Deadline, give_up: Deadline) -> None:
        """Wait for everything added so far; a failed reward call fails the request.

        At `aim`, stop waiting if something is scored: the best so far is the
        answer, and `cut` records that scoring was cut short. With nothing scored,
        let the fallback score (if there is one), and wait on until `give_up`,
        then stop regardless (the caller answers 504).
        """
        if self.task is None:
            return
        if not await self._finished_by(aim):
            if self.batches:
                self.cut = True
                return
            if self.fallback is not None and not self.degraded:
                self.task.cancel()
                self.degrade("scorer_slow")
                self.task = asyncio.ensure_future(self._work())
            if not await self._finished_by(give_up):
                return
        task, self.task = self.task, None
        await task  # done: raises what the reward call raised

    async def _finished_by(self, deadline: Deadline) -> bool:
        """Whether the scoring under way finished by `deadline` (it goes on if not)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.task), max(deadline.remaining(), 0))
            return True
        except TimeoutError:
            return False

    @property
    def scored(self) -> list[ScoredCandidate]:
        """Every candidate scored so far, as if scored in one call (see concat)."""
        merged = concat([scores for _, scores in self.batches])
        candidates = [c for batch, _ in self.batches for c in batch]
        return [ScoredCandidate(c, float(v)) for c, v in zip(candidates, merged.values)]

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def out_of_time(message: str) -> BudgetExhausted:
    return BudgetExhausted(message, param="latency_budget_ms", code="budget_exhausted")


async def best_of_n(
    generator: Generator,
    reward: RewardModel,
    prompt: Prompt,
    sampling: SamplingSpec,
    *,
    best_of: int,
    n: int,
    budget: Budget,
    pruning: PruningPlan | None = None,
    fallback: RewardModel | None = None,
    min_chars: int = 1,
) -> Selection:
    """Pick the n best of best_of candidates within the budget.

    Generation stops at `budget.generate_by`, leaving time to score the texts at
    hand; if the last scoring call still runs at `budget.select_by`, the best
    candidate scored by then is the answer. Raises BudgetExhausted (the one
    place a 504 is decided) when nothing is scored by `budget.give_up_by` (the
    client's deadline): no candidate produced text, or the calls were stuck.
    With a `fallback` reward, an unavailable or stuck reward model degrades the
    scoring instead (see `_Scorer`). A degenerate candidate (fewer than `min_chars`
    characters besides whitespace: empty, a stray token) never wins while one that
    is not was produced, finished or not.
    """

    def degenerate(candidate: Candidate) -> bool:
        return len(candidate.text.strip()) < min_chars

    if not 1 <= n <= best_of:
        raise ValueError(f"need 1 <= n <= best_of, got n={n}, best_of={best_of}")
    if budget.generate_by.remaining() <= 0:  # it waited too long to be started: no candidate for nobody
        raise out_of_time("the latency budget ran out before generation could start")
    started = time.perf_counter()
    candidates: list[Candidate] = []
    scorer = _Scorer(reward, prompt, fallback)
    stream = generator.generate(prompt, sampling, best_of, budget.generate_by, pruning)
    try:
        # The generator ends its stream by generate_by; one stuck past the deadline is let go.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget.give_up_by.remaining()):
                async for candidate in stream:
                    candidates.append(candidate)
                    if candidate.finished:
                        scorer.add(candidate)
        generated = time.perf_counter()
        await scorer.drain(budget.select_by, budget.give_up_by)
        if all(degenerate(sc.candidate) for sc in scorer.scored):  # nothing worth having finished: the partials
            partials = [c for c in candidates if not c.finished and c.text.strip()]
            partials = [c for c in partials if not degenerate(c)] or partials
            # The pruned ones were judged worse already; only if nothing else has text.
            for candidate in sorted([c for c in partials if not c.pruned] or partials, key=lambda c: c.index):
                scorer.add(candidate)
            await scorer.drain(budget.give_up_by, budget.give_up_by)
    finally:
        scorer.cancel()  # client gone, a failure or the deadline: no scoring for nobody
        await stream.aclose()
    if not scorer.batches:
        raise out_of_time("the latency budget ran out before any candidate produced text")
    scored = sorted(scorer.scored, key=lambda sc: sc.candidate.index)
    ranked = sorted(scored, key=lambda sc: (degenerate(sc.candidate), -sc.score, sc.candidate.index))
    return Selection(
        chosen=ranked[:n],
        scored=scored,
        candidates_generated=len(candidates),
        prompt_tokens=candidates[0].prompt_tokens,
        completion_tokens=sum(c.completion_tokens for c in candidates),
        stopped_early=scorer.cut or any(not c.finished and not c.pruned for c in candidates),
        candidates_pruned=sum(c.pruned for c in candidates),
        generate_s=generated - started,
        score_calls=tuple(scorer.calls),
        degraded=scorer.degraded,
    )
