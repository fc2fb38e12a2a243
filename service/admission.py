"""Deadline-aware admission: take a request on only if it can be answered by its
deadline, and otherwise refuse it at once with a Retry-After worth trusting.

Under overload, taking everything on makes everyone late: every candidate in the
engine slows down every other. So before a request's candidates are sampled,
`Capacity.reserve` predicts how long they will take with the load already
admitted, from what answered requests measured:

- the decode speed of one candidate (tokens/s, prefill and engine queueing
  included), learned per concurrency level, because batching makes the engine
  faster in total but each candidate slower as more run at once;
- the share of `max_tokens` a request's longest candidate really generates
  (most stop early, at end of text or pruned);
- the scoring time, already kept back in the plan's budget (`generate_by`).

It then takes the most candidates (from the plan's, already lowered by adaptive
best_of while the generator is saturated, down to the floor)
that still finish by the request's `generate_by`. If not even the floor does,
the request is refused with 503 and a Retry-After predicted from when the
admitted requests will have finished. A request that would not fit even on an
idle engine is taken on all the same: its budget is too tight, not the service
too busy, and anytime selection answers it as well as the budget allows.

The books are kept per ingress replica, from its own requests; with several
replicas each sees its share of the load and of the engine's speed. The
generator's own count of running candidates (`Generator.load`) is the floor of
what is assumed to be running, so other replicas' work is not ignored.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from service import metrics
from service.config import AdmissionConfig
from service.errors import Overloaded, retry_after
from service.plan import RerankPlan, Ticket

if TYPE_CHECKING:
    from service.selection import Selection


# Answers are assumed to use at least this share of max_tokens, however short the
# recent ones were: one burst of one-word answers must not open the doors wide.
MIN_FILL = 0.1


class DecodeSpeed:
    """Tokens per second of one candidate, by how many candidates ran at once.

    Levels are powers of two (1, 2, 4, ...). A level never measured is predicted
    from the nearest measured one on the safe side: above it, as if the engine's
    total throughput stopped growing; below it, as if one candidate got no faster.
    """

    def __init__(self, weight: float = 0.3):
        self.weight = weight
        self.by_level: dict[int, float] = {}

    @staticmethod
    def level(concurrency: float) -> int:
        return 1 << max(0, round(math.log2(max(concurrency, 1.0))))

    def observe(self, concurrency: float, tokens_per_s: float) -> None:
        level = self.level(concurrency)
        old = self.by_level.get(level)
        self.by_level[level] = tokens_per_s if old is None else old + self.weight * (tokens_per_s - old)

    def at(self, concurrency: int) -> float | None:
        """Predicted tokens/s of one candidate with `concurrency` candidates running; None before any measurement."""
        if not self.by_level:
            return None
        want = self.level(concurrency)
        nearest = min(self.by_level, key=lambda level: (abs(math.log2(level / want)), -level))
        speed = self.by_level[nearest]
        return speed * nearest / concurrency if concurrency > nearest else speed


@dataclass
class Admitted:
    """A request on the books: its candidates run until `expected_end` at the latest."""

    candidates: int
    expected_end: float


@dataclass
class Capacity:
    """The admission books of one process: what runs now, and how fast things ran."""

    config: AdmissionConfig
    saturation_candidates: int = 0
    clock: Callable[[], float] = time.time
    speed: DecodeSpeed = field(default_factory=DecodeSpeed)
    fill: float = 1.0  # share of max_tokens the longest candidate generates (moving average)
    admitted: list[Admitted] = field(default_factory=list)

    @property
    def candidates(self) -> int:
        return sum(entry.candidates for entry in self.admitted)

    def predict_s(self, concurrency: int, max_tokens: int) -> float | None:
        """Seconds until a request's longest candidate finishes with `concurrency`
        candidates running (its own included); None while nothing has been measured."""
        speed = self.speed.at(concurrency)
        if speed is None:
            return None
        return max_tokens * self.fill / speed

    def fits(self, candidates: int, running: int, max_tokens: int, window_s: float) -> bool:
        predicted = self.predict_s(running + candidates, max_tokens)
        if predicted is None:  # nothing measured yet: only the configured saturation point bounds the load
            return not self.saturation_candidates or running + candidates <= max(self.saturation_candidates,
                                                                                  candidates)
        return predicted <= window_s

    @contextlib.contextmanager
    def reserve(self, plan: RerankPlan, engine_load: int = 0) -> Iterator[Ticket]:
        """Put `plan` on the books for the duration of the block, with as many of its
        candidates as can finish in time (the ticket says how many); raises Overloaded
        (503) when not even the floor can while an idle engine could."""
        now = self.clock()
        running = max(self.candidates, engine_load)
        window_s = plan.budget.generate_by.at - now
        floor = min(plan.candidates, plan.floor)
        chosen = plan.candidates
        if self.config.enabled:
            chosen = next((k for k in range(plan.candidates, floor - 1, -1)
                           if self.fits(k, running, plan.max_tokens, window_s)), None)
            if chosen is None:
                if running and self.fits(floor, 0, plan.max_tokens, window_s):
                    metrics.REFUSED.labels("capacity").inc()
                    raise self.refusal(floor, plan.max_tokens, plan.budget.generate_by.at - plan.budget.arrived, now)
                chosen = plan.candidates  # too tight even for an idle engine: the client's budget, not our load
        predicted = self.predict_s(running + chosen, plan.max_tokens)
        end = plan.budget.answer_by.at if predicted is None else min(plan.budget.answer_by.at, now + predicted)
        entry = Admitted(chosen, end)
        self.admitted.append(entry)
        try:
            yield Ticket(candidates=chosen, concurrency=running + chosen)
        finally:
            self.admitted.remove(entry)

    def refusal(self, floor: int, max_tokens: int, window_s: float, now: float) -> Overloaded:
        """A 503 whose Retry-After is when enough admitted work will have ended for
        `floor` candidates to fit a fresh request's `window_s`."""
        ends = sorted(self.admitted, key=lambda entry: entry.expected_end)
        running = self.candidates
        retry_at = ends[-1].expected_end if ends else now + 1
        for entry in ends:
            running -= entry.candidates
            if self.fits(floor, running, max_tokens, window_s):
                retry_at = entry.expected_end
                break
        headers = retry_after(retry_at - now)
        return Overloaded(
            f"prune cannot answer this request within its latency budget now; retry in {headers['Retry-After']} s",
            code="capacity", headers=headers,
        )

    def observe(self, plan: RerankPlan, selection: Selection) -> None:
        """Learn from an answered request: how fast its longest candidate ran, and how
        much of max_tokens it used."""
        longest = max((sc.candidate.completion_tokens for sc in selection.scored), default=0)
        if longest <= 0 or selection.generate_s <= 0:
            return
        at_start = plan.ticket.concurrency if plan.ticket else plan.effective_best_of
        concurrency = (at_start + max(self.candidates, plan.effective_best_of)) / 2
        self.speed.observe(concurrency, longest / selection.generate_s)
        if not selection.stopped_early:  # a deadline cut says nothing about how long answers run
            share = min(1.0, longest / plan.max_tokens)
            self.fill = max(MIN_FILL, self.fill + self.speed.weight * (share - self.fill))
