"""Best-of-N selection as plain async code: no Ray, no HTTP.

Anytime: candidates are scored as they finish, in micro-batches (whatever
finished while the previous scoring call ran goes into the next one), so the
best-so-far is always known and little scoring is left when the deadline comes.
At the deadline the generator hands back the unfinished candidates' partial
texts, which compete with the finished ones, their rewards corrected for how the
reward model overrates cut texts (service.partials). A stream that committed to
its leaders (service.commit) passes their text on as it comes, and they are the
answer. Identical texts count once; ties go to the earlier candidate, so results
are deterministic for a given set of candidates.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import AsyncIterator, NamedTuple

from service.budget import Budget
from service.errors import APIError, BudgetExhausted
from service.generator.base import Generator
from service.plan import RerankPlan
from service.ranking import Ranking
from service.reward.base import RewardModel
from service.types import Candidate, Committed, Deadline, Delta, Prompt, Scores, concat


@dataclass(frozen=True)
class ScoredCandidate:
    candidate: Candidate
    score: float


class ScoreCall(NamedTuple):
    """One reward call of a request."""

    seconds: float
    texts: int
    started: float  # wall clock


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
    score_calls: tuple[ScoreCall, ...]  # the request's reward model's calls, in order
    degraded: str | None = None  # the fallback reward scored instead, and why
    commit: Commit | None = None  # a stream that committed to its leaders early
    streamed: tuple[str, ...] = ()  # per choice, the text already passed on as Pieces (a committed stream)
    candidates: tuple[Candidate, ...] = ()  # every candidate as it ended, pruned and unscored ones included
    started: float = 0.0  # wall clock: selection started (the candidates were asked for)
    selected: float = 0.0  # wall clock: the answer was chosen

    @property
    def score_s(self) -> float:
        """Time spent in reward calls (overlaps generation)."""
        return sum(call.seconds for call in self.score_calls)

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
        self.calls: list[ScoreCall] = []  # the request's reward model's, for the scoring cost
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
            started, started_at = time.perf_counter(), time.time()
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
                self.calls.append(ScoreCall(time.perf_counter() - started, len(self.scoring), started_at))
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


@dataclass(frozen=True)
class Commit:
    """A stream committed to its leaders (service.commit): the stream event after which
    their text follows as Pieces, and the account of it on the Selection."""

    choices: int
    at_tokens: int  # 0: nothing to choose, streamed from the first token
    at_ms: float  # since the request arrived
    candidates_alive: int  # running or finished when it committed
    leader_scores: tuple[float, ...]  # the leaders' partial rewards at the commit point (none at 0 tokens)


@dataclass(frozen=True)
class Piece:
    """Stream event: more text of choice `choice`."""

    choice: int
    text: str


async def until(stream: AsyncIterator, deadline: Deadline) -> AsyncIterator:
    """The stream's events until it ends or `deadline` passes: a generator stuck past
    it is let go. The timeout covers each wait, never a yield: one that fired while
    the consumer holds an event would cancel the consumer."""
    while True:
        try:
            async with asyncio.timeout(max(deadline.remaining(), 0)):
                event = await anext(stream)
        except (StopAsyncIteration, TimeoutError):
            return
        yield event


def new_text(sent: str, text: str) -> str:
    """What `text` adds to what was sent (nothing if it does not extend it: sent text cannot be taken back)."""
    return text[len(sent):] if text.startswith(sent) else ""


async def rerank(
    generator: Generator, reward: RewardModel, plan: RerankPlan, fallback: RewardModel | None = None,
) -> AsyncIterator[Commit | Piece | Selection]:
    """Pick the plan's n best of its candidates within its budget; the last event is
    the `Selection`. With a commit plan (a stream), a `Commit` comes as soon as the
    generator committed to its leaders, then their text as `Piece`s: the Selection's
    choices.

    Generation stops at `budget.generate_by`, leaving time to score the texts at
    hand; if the last scoring call still runs at `budget.select_by`, the best
    candidate scored by then is the answer. Raises BudgetExhausted (the one place
    a 504 is decided) when nothing is scored by `budget.answer_by` (the client's
    deadline). With a `fallback` reward, an unavailable or stuck reward model
    degrades the scoring instead (see `_Scorer`).

    Partial texts (cut by the deadline) compete with finished ones, ranked by the
    plan's rule (service.ranking); pruned ones only if nothing else has text. A
    degenerate candidate never wins while one that is not was produced, finished or not.
    """
    budget, ranking = plan.budget, plan.ranking
    if not 1 <= plan.n <= plan.effective_best_of:
        raise ValueError(f"need 1 <= n <= best_of, got n={plan.n}, best_of={plan.effective_best_of}")
    if budget.generate_by.remaining() <= 0:  # it waited too long to be started: no candidate for nobody
        raise out_of_time("the latency budget ran out before generation could start")
    started, started_at = time.perf_counter(), time.time()
    scorer = _Scorer(reward, plan.prompt, fallback)
    seen = _Seen(budget)
    stream = generator.generate(plan.prompt, plan.sampling, plan.effective_best_of, budget.generate_by,
                                plan.pruning, plan.commit)
    try:
        async for event in until(stream, budget.answer_by):
            for passed_on in seen.take(event, scorer):
                yield passed_on
        generate_s = time.perf_counter() - started
        if seen.committed is not None and not seen.sent:  # committed, but no text came: answered as if it never had
            seen.committed = seen.commit = None
        if seen.committed is not None:  # the leaders are the answer; their rewards are for the account
            chosen = await _score_leaders(scorer, seen.leaders_final(), seen.committed.scores, budget)
        else:
            await _score_partials(scorer, list(seen.candidates.values()), budget, ranking)
    finally:
        scorer.cancel()  # client gone, a failure or the deadline: no scoring for nobody
        await stream.aclose()
    if seen.committed is None:
        if not scorer.batches:
            raise out_of_time("the latency budget ran out before any candidate produced text")
        chosen = best(scorer.scored, plan.n, ranking)
    yield seen.selection(chosen, scorer, generate_s, started_at)


def best(scored: list[ScoredCandidate], n: int, ranking: Ranking) -> list[ScoredCandidate]:
    """The n best, by the ranking rule."""
    return sorted(scored, key=lambda sc: ranking.key(sc.candidate.index, sc.candidate.text, sc.score,
                                                      sc.candidate.finished, sc.candidate.completion_tokens))[:n]


class _Seen:
    """What rerank has seen of the generator: each candidate's latest word and, once the
    generator committed, the leaders' text passed on to the stream."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.candidates: dict[int, Candidate] = {}  # by index, the latest word on each
        self.committed: Committed | None = None  # the generator's word
        self.commit: Commit | None = None  # the stream's, once its first text is passed on
        self.sent: dict[int, str] = {}  # a leader's text passed on so far

    def take(self, event: Candidate | Committed | Delta, scorer: _Scorer) -> list[Commit | Piece]:
        if isinstance(event, Committed):
            self.committed = event
            self.commit = Commit(len(event.leaders), event.at_tokens, self.budget.elapsed_ms(time.time()),
                                 event.alive, event.scores)
            leaders = [self.candidates[i] for i in event.leaders if i in self.candidates]  # finished: whole already
        elif isinstance(event, Delta):
            text = self.sent.get(event.index, "") + event.text
            leaders = [Candidate(event.index, text, "length", event.tokens, finished=False)]
        else:
            self.candidates[event.index] = event
            if event.finished:
                scorer.add(event)
            leaders = [event] if self.committed is not None and event.index in self.committed.leaders else []
        passed_on: list[Commit | Piece] = []
        for leader in leaders:
            piece = new_text(self.sent.get(leader.index, ""), leader.text)
            if not piece:
                continue
            if not self.sent:  # the stream begins with its first text: until then a 504 is still possible
                passed_on.append(self.commit)
            self.sent[leader.index] = self.sent.get(leader.index, "") + piece
            passed_on.append(Piece(self.committed.leaders.index(leader.index), piece))
        return passed_on

    def leaders_final(self) -> list[Candidate]:
        """The committed leaders as they ended: finished, or cut with the text passed on."""
        return [self.candidates.get(i) or Candidate(i, self.sent.get(i, ""), "length", 0, finished=False)
                for i in self.committed.leaders]

    def selection(self, chosen: list[ScoredCandidate], scorer: _Scorer, generate_s: float,
                  started: float) -> Selection:
        everything = list(self.candidates.values())
        return Selection(
            chosen=chosen,
            scored=sorted(scorer.scored, key=lambda sc: sc.candidate.index),
            candidates_generated=len(everything),
            prompt_tokens=everything[0].prompt_tokens if everything else 0,
            completion_tokens=sum(c.completion_tokens for c in everything),
            stopped_early=scorer.cut or any(not c.finished and not c.pruned for c in everything),
            candidates_pruned=sum(c.pruned for c in everything),
            generate_s=generate_s,
            score_calls=tuple(scorer.calls),
            degraded=scorer.degraded,
            commit=self.commit,
            streamed=tuple(self.sent.get(i, "") for i in self.committed.leaders) if self.committed else (),
            candidates=tuple(sorted(everything, key=lambda c: c.index)),
            started=started,
            selected=time.time(),
        )


async def _score_leaders(
    scorer: _Scorer, finals: list[Candidate], at_commit: tuple[float, ...], budget: Budget
) -> list[ScoredCandidate]:
    """The committed leaders' final texts, scored for the account. Their text is out:
    no 504 now; a leader whose scoring the deadline cut keeps its reward at the
    commit point, and the account says the scoring was cut."""
    for final in finals:
        scorer.add(final)
    await scorer.drain(budget.select_by, budget.answer_by)
    by_text = {sc.candidate.text.strip(): sc.score for sc in scorer.scored}
    if any(final.text.strip() not in by_text for final in finals):
        scorer.degraded = scorer.degraded or "scorer_slow"
    stand_in = list(at_commit) + [0.0] * len(finals)
    return [ScoredCandidate(final, by_text.get(final.text.strip(), stand_in[j])) for j, final in enumerate(finals)]


async def _score_partials(scorer: _Scorer, candidates: list[Candidate], budget: Budget, ranking: Ranking) -> None:
    """Add the texts the deadline cut short: they compete with the finished ones, fairly.
    The pruned (judged worse already) and the degenerate (near empty) only if nothing
    else has text."""
    partials = sorted((c for c in candidates if not c.finished and c.text.strip()), key=lambda c: c.index)
    for candidate in partials:
        if not candidate.pruned and not ranking.is_degenerate(candidate.text):
            scorer.add(candidate)
    await scorer.drain(budget.select_by, budget.answer_by)
    if all(ranking.is_degenerate(sc.candidate.text) for sc in scorer.scored):  # nothing worth having: the last resorts
        for candidate in [c for c in partials if not ranking.is_degenerate(c.text)] or partials:
            scorer.add(candidate)
        await scorer.drain(budget.answer_by, budget.answer_by)
