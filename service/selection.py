"""Best-of-N selection as plain async code: no Ray, no HTTP.

Sample `best_of` candidates, keep the finished ones (or, if the deadline left
none, the partial ones), drop duplicate texts, score the rest in one batch and
return the `n` best. Ties go to the earlier candidate, so results are
deterministic for a given set of candidates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.errors import BudgetExhausted
from service.generator.base import Generator
from service.reward.base import RewardModel
from service.types import Candidate, Deadline, Prompt, SamplingSpec


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
    stopped_early: bool  # the deadline cut at least one candidate short
    generate_s: float
    score_s: float


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
) -> Selection:
    """Pick the n best of best_of candidates by the deadline.

    Generation stops `scoring_reserve_s` before the deadline so that scoring fits.
    Raises BudgetExhausted when no candidate produced any text in time.
    """
    if not 1 <= n <= best_of:
        raise ValueError(f"need 1 <= n <= best_of, got n={n}, best_of={best_of}")
    started = time.perf_counter()
    candidates: list[Candidate] = []
    stream = generator.generate(prompt, sampling, best_of, deadline.earlier_by(scoring_reserve_s))
    try:
        async for candidate in stream:
            candidates.append(candidate)
    finally:
        await stream.aclose()
    generated = time.perf_counter()

    finished = [c for c in candidates if c.finished]
    pool = finished or [c for c in candidates if c.text.strip()]
    if not pool:
        raise BudgetExhausted(
            "the latency budget ran out before any candidate produced text",
            param="latency_budget_ms",
            code="budget_exhausted",
        )
    pool = _distinct(sorted(pool, key=lambda c: c.index))
    scores = await reward.score(prompt, [c.text for c in pool], sampling.max_tokens)
    if len(scores.values) != len(pool):
        raise RuntimeError(f"reward model returned {len(scores.values)} scores for {len(pool)} candidates")
    scored = [ScoredCandidate(c, float(s)) for c, s in zip(pool, scores.values)]
    ranked = sorted(scored, key=lambda sc: (-sc.score, sc.candidate.index))
    return Selection(
        chosen=ranked[:n],
        scored=scored,
        candidates_generated=len(candidates),
        prompt_tokens=candidates[0].prompt_tokens,
        completion_tokens=sum(c.completion_tokens for c in candidates),
        stopped_early=any(not c.finished for c in candidates),
        generate_s=generated - started,
        score_s=time.perf_counter() - generated,
    )


def _distinct(candidates: list[Candidate]) -> list[Candidate]:
    """Identical texts count once (the first keeps its place)."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        key = c.text.strip()
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
