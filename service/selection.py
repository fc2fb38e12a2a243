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
import statistics
import time
from dataclasses import dataclass

from service.errors import BudgetExhausted
from service.generator.base import Generator
from service.pruning import Pruning
from service.reward.base import RewardModel
from service.types import Candidate, Deadline, Prompt, SamplingSpec, Scores, merge_scores


class ScoringCost:
    """Seconds per scored text, per reward model (moving average of every call), so
    generation can stop early enough to score the texts at hand by the deadline."""

    def __init__(self, weight: float = 0.3):
        self.weight = weight
        self.per_text: dict[object, float] = {}

    def observe(self, key: object, seconds: float, texts: int) -> None:
        value = seconds / max(texts, 1)  # fixed per-call costs count in: an overestimate, on the safe side
        old = self.per_text.get(key)
        self.per_text[key] = value if old is None else old + self.weight * (value - old)

    def reserve(self, key: object, texts: int) -> float:
        """Time to keep for scoring `texts` texts at the end (the partial fallback)."""
        return self.per_text.get(key, 0.0) * texts


SCORING_COST = ScoringCost()


def cost_key(reward: RewardModel) -> object:
    # Handles to the scorer deployment come and go; their name stays.
    return getattr(reward, "name", None) or reward


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
    score_s: float  # time spent in reward calls (overlaps generation)
    score_calls: int

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

    def __init__(self, reward: RewardModel, prompt: Prompt, max_tokens: int):
        self.reward, self.prompt, self.max_tokens = reward, prompt, max_tokens
        self.batches: list[tuple[list[Candidate], Scores]] = []
        self.waiting: list[Candidate] = []
        self.texts: set[str] = set()
        self.task: asyncio.Task | None = None
        self.seconds = 0.0
        self.calls = 0
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
            scores = await self.reward.score(self.prompt, [c.text for c in batch], self.max_tokens)
            if len(scores.values) != len(batch):
                raise RuntimeError(f"reward model returned {len(scores.values)} scores for {len(batch)} candidates")
            self.batches.append((batch, scores))
            SCORING_COST.observe(cost_key(self.reward), time.perf_counter() - started, len(batch))
            self.seconds += time.perf_counter() - started
            self.calls += 1

    async def drain(self, deadline: Deadline | None = None) -> None:
        """Wait for everything added so far; a failed reward call fails the request.

        With a deadline, stop waiting there if something is scored already: the
        best so far is the answer, and `cut` records that scoring was cut short.
        """
        if self.task is None:
            return
        if deadline is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), max(deadline.remaining(), 0))
            except TimeoutError:
                if self.batches:
                    self.cut = True
                    return
        task, self.task = self.task, None
        await task

    @property
    def scored(self) -> list[ScoredCandidate]:
        """Every candidate scored so far, as if scored in one call (see merge_scores)."""
        merged = merge_scores([scores for _, scores in self.batches])
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
    deadline: Deadline,
    scoring_reserve_s: float = 0.0,
    pruning: Pruning | None = None,
) -> Selection:
    """Pick the n best of best_of candidates by the deadline.

    Generation stops early enough to score every candidate's text by the
    deadline (from the reward model's measured cost, at least
    `scoring_reserve_s`, at most a quarter of the time left); if the last
    scoring call still runs late, the best candidate scored by the deadline is
    the answer. Raises BudgetExhausted when no candidate produced any
    text in time.
    """
    if not 1 <= n <= best_of:
        raise ValueError(f"need 1 <= n <= best_of, got n={n}, best_of={best_of}")
    started = time.perf_counter()
    candidates: list[Candidate] = []
    scorer = _Scorer(reward, prompt, sampling.max_tokens)
    reserve = max(scoring_reserve_s, SCORING_COST.reserve(cost_key(reward), best_of))
    reserve = min(reserve, max(deadline.remaining(), 0) / 4)
    stream = generator.generate(prompt, sampling, best_of, deadline.earlier_by(reserve), pruning)
    try:
        async for candidate in stream:
            candidates.append(candidate)
            if candidate.finished:
                scorer.add(candidate)
        generated = time.perf_counter()
        await scorer.drain(deadline)
        if not scorer.batches:  # nothing finished: fall back to the partial texts
            partials = [c for c in candidates if c.text.strip()]
            # The pruned ones were judged worse already; only if nothing else has text.
            for candidate in sorted([c for c in partials if not c.pruned] or partials, key=lambda c: c.index):
                scorer.add(candidate)
            await scorer.drain()
    finally:
        scorer.cancel()  # client gone or a failure: no scoring for nobody
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
        score_s=scorer.seconds,
        score_calls=scorer.calls,
    )
