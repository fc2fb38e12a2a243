"""A request's latency budget and every time point derived from it, in one value.

The client asks for an answer within `budget_ms` of arrival. From that one
number come the client's deadline, the time selection aims to be done (the
answer still has to travel back through Ray and HTTP) and the time generation
stops (what is at hand still has to be scored); a stuck call is given up at the
client's deadline. Each is written here once; nothing else does deadline arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.types import Deadline

# No single reserve takes more than this share of the time it is carved from:
# a tight budget still leaves most of itself to generating.
MAX_RESERVE_SHARE = 0.25


@dataclass(frozen=True)
class Budget:
    arrived: float  # wall clock, seconds: when prune first saw the request
    budget_ms: int
    answer_by: Deadline  # the client's deadline; a call still running then fails the request (a 504 leaves on time)
    select_by: Deadline  # selection is done, so the answer reaches the client by answer_by
    generate_by: Deadline  # unfinished candidates are aborted, so the texts at hand are scored by select_by

    @classmethod
    def starting(cls, arrived: float, budget_ms: int, *, response_margin_s: float, scoring_reserve_s: float) -> Budget:
        """The budget of a request that arrived at `arrived` (wall clock).

        `response_margin_s`: time for the answer to travel back; `scoring_reserve_s`:
        time to score the candidates at hand. Each is capped at a quarter of the
        time it is taken from.
        """
        budget_s = budget_ms / 1000.0
        answer_by = arrived + budget_s
        select_by = answer_by - min(response_margin_s, budget_s * MAX_RESERVE_SHARE)
        generate_by = select_by - min(scoring_reserve_s, (select_by - arrived) * MAX_RESERVE_SHARE)
        return cls(
            arrived=arrived,
            budget_ms=budget_ms,
            answer_by=Deadline(answer_by),
            select_by=Deadline(select_by),
            generate_by=Deadline(generate_by),
        )

    @property
    def deadline_ms(self) -> int:
        """The client's deadline in Unix milliseconds, as reported in `reranking`."""
        return round(self.answer_by.at * 1000)

    def elapsed_ms(self, at: float) -> float:
        return round((at - self.arrived) * 1000, 1)
