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
from service.errors import BudgetExhausted
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
    """Scores distinct texts in micro-batches, one reward call at a time."""

    def __init__(self, reward: RewardModel, prompt: Prompt):
        self.reward, self.prompt = reward, prompt
        self.batches: list[tuple[list[Candidate], Scores]] = []
        self.waiting: list[Candidate] = []
        self.texts: set[str] = set()
        self.task: asyncio.Task | None = None
        self.calls: list[tuple[float, int]] = []  # (seconds, texts)
        self.cut = False  # the deadline came before every candidate was scored

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
            batch, self.waiting = self.waiting, []
            started = time.perf_counter()
            scores = await self.reward.score(self.prompt, [c.text for c in batch])
            if len(scores.values) != len(batch):
                raise RuntimeError(f"reward model returned {len(scores.values)} scores for {len(batch)} candidates")
            self.batches.append((batch, scores))
            self.calls.append((time.perf_counter() - started, len(batch)))

    async def drain(self, aim: Deadline, give_up: Deadline) -> None:
        """Wait for everything added so far; a failed reward call fails the request.

        At `aim`, stop waiting if something is scored: the best so far is the
        answer, and `cut` records that scoring was cut short. With nothing scored,
        wait on until `give_up`, then stop regardless (the caller answers 504).
        """
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), max(aim.remaining(), 0))
        except TimeoutError:
            if self.batches:
                self.cut = True
                return
            try:
                await asyncio.wait_for(asyncio.shield(self.task), max(give_up.remaining(), 0))
            except TimeoutError:
                return
        task, self.task = self.task, None
        await task  # done: raises what the reward call raised

    @property
    def scored(self) -> list[ScoredCandidate]:
        """Every candidate scored so far, as if scored in one call (see concat)."""
        merged = concat([scores for _, scores in self.batches])
        candidates = [c for batch, _ in self.batches for c in batch]
        return [ScoredCandidate(c, float(v)) for c, v in zip(candidates, merged.values)]

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


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
) -> Selection:
    """Pick the n best of best_of candidates within the budget.

    Generation stops at `budget.generate_by`, leaving time to score the texts at
    hand; if the last scoring call still runs at `budget.select_by`, the best
    candidate scored by then is the answer. Raises BudgetExhausted (the one
    place a 504 is decided) when nothing is scored by `budget.give_up_by` (the
    client's deadline): no candidate produced text, or the calls were stuck.
    """
    if not 1 <= n <= best_of:
        raise ValueError(f"need 1 <= n <= best_of, got n={n}, best_of={best_of}")
    if budget.generate_by.remaining() <= 0:  # it waited too long to be started: no candidate for nobody
        raise BudgetExhausted(
            "the latency budget ran out before generation could start", param="latency_budget_ms",
            code="budget_exhausted",
        )
    started = time.perf_counter()
    candidates: list[Candidate] = []
    scorer = _Scorer(reward, prompt)
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
        if not scorer.batches:  # nothing finished: fall back to the partial texts
            partials = [c for c in candidates if c.text.strip()]
            # The pruned ones were judged worse already; only if nothing else has text.
            for candidate in sorted([c for c in partials if not c.pruned] or partials, key=lambda c: c.index):
                scorer.add(candidate)
            await scorer.drain(budget.give_up_by, budget.give_up_by)
    finally:
        scorer.cancel()  # client gone, a failure or the deadline: no scoring for nobody
        await stream.aclose()
    if not scorer.batches:
        raise BudgetExhausted(
            "the latency budget ran out before any candidate produced text",
            param="latency_budget_ms",
            code="budget_exhausted",
        )
    scored = sorted(scorer.scored, key=lambda sc: sc.candidate.index)
    ranked = sorted(scored, key=lambda sc: (-sc.score, sc.candidate.index))
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
    )
