"""The race engine of a generator: one run per candidate, racing the deadline.

`RacingGenerator.generate` is the template every engine shares: the request is
prepared once (checks, token ids), then each candidate runs as its own coroutine
(`candidate`, the one thing an engine writes), reporting its text to `Progress` as
it grows. `race_deadline` yields the candidates as they finish, prunes at the
checkpoints (starting the candidates a verdict draws, and branches that continue a
leader's text: engines that can write `continuing`), commits a stream to its
leaders, and cuts everything at the deadline.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Coroutine, Sequence

from service import metrics
from service.errors import BadRequest
from service.generator.base import Generator
from service.types import Candidate, CandidateTiming, Committed, Deadline, Delta, Prompt, SamplingSpec

if TYPE_CHECKING:
    from service.commit import ChooseLeaders, CommitPlan
    from service.pruning import ChooseVictims, PruningPlan


@dataclass(frozen=True)
class Prepared:
    """A request as an engine takes its candidates: what `prepare` worked out once."""

    prompt: Prompt
    sampling: SamplingSpec
    prompt_tokens: int = 0  # 0: counted by the engine as it answers (a remote server's usage)
    engine: Any = None  # what else the engine worked out once (vLLM: token ids and engine parameters)


class RacingGenerator(Generator):
    """A Generator whose candidates each run as one coroutine, raced by `race_deadline`."""

    can_branch = False  # whether `continuing` starts a candidate from another's text (the branch rule)

    async def generate(
        self, prompt: Prompt, sampling: SamplingSpec, n: int, deadline: Deadline,
        pruning: PruningPlan | None = None, commit: CommitPlan | None = None,
    ) -> AsyncIterator[Candidate | Committed | Delta]:
        request = await self.prepare(prompt, sampling)
        judging = self.judging(prompt, n, pruning, commit)
        progress = Progress(request.prompt_tokens, judging.checkpoints)

        async def run(i: int, prefix: tuple[str, int] | None = None) -> Candidate:
            # A branch continues another candidate's text so far (`prefix`: its text and tokens).
            return await self.candidate(request if prefix is None else await self.continuing(request, *prefix),
                                        i, progress)

        # Cancelling a candidate's run aborts its request in the engine. Adaptive N
        # (pruning.first_wave) starts some now and the rest when the judge draws them.
        first = n if pruning is None else pruning.starting(n)
        async for event in race_deadline([run(i) for i in range(first)], deadline, progress, judging, draw=run):
            yield event

    async def prepare(self, prompt: Prompt, sampling: SamplingSpec) -> Prepared:
        """Check the request and work out what every candidate shares; a 400 naming the
        parameter for a prompt the model cannot take."""
        return Prepared(prompt, sampling)

    async def continuing(self, request: Prepared, text: str, tokens: int) -> Prepared:
        """The request as a branch takes it: sampling on from `text` (another candidate's
        first `tokens` tokens) instead of from the prompt alone; the candidate then reports
        and returns only what it adds. Engines that can set `can_branch` and write this;
        the others refuse a plan that branches (400)."""
        raise cannot_branch()

    @abstractmethod
    async def candidate(self, request: Prepared, i: int, progress: Progress) -> Candidate:
        """Sample candidate i (seed `sampling.seed + i`), reporting its text to `progress`
        as it grows (`progress.update`), inside `self.running_candidate()`; cancelled, it
        aborts its request in the engine."""

    def judging(self, prompt: Prompt, n: int, pruning: PruningPlan | None, commit: CommitPlan | None) -> Judging:
        """The checkpoints and judges of a request's candidates, for `race_deadline`."""
        if pruning is not None and pruning.branch is not None and not self.can_branch:
            raise cannot_branch()
        choose = pruning.chooser(self.judge, prompt, n) if pruning else None
        # With no more candidates than leaders nothing is judged (no judge needed).
        leaders = None if commit is None or n <= commit.leaders else commit.chooser(self.judge, prompt)
        return Judging(schedule(pruning, commit), choose, None if commit is None else (commit, leaders))


def cannot_branch() -> BadRequest:
    return BadRequest("this generator cannot branch (continue a candidate's text): pruning rule branch",
                      param="pruning.rule")


class Progress:
    """Each candidate's text so far: the partial answer at the deadline, the
    snapshots that pruning and the commit judge at their checkpoints, and, once a
    stream committed, which of the followed leaders have new text."""

    def __init__(self, prompt_tokens: int, checkpoints: Sequence[int] = ()):
        self.prompt_tokens = prompt_tokens
        self.started = time.time()  # the candidates' engine requests go out now
        self.first_token_at: dict[int, float] = {}
        self.queued_s: dict[int, float] = {}  # what an engine says about its queue (vLLM)
        self.latest: dict[int, tuple[str, int]] = {}  # candidate -> (text, tokens), a branch's prefix included
        self.prefixes: dict[int, tuple[str, int]] = {}  # branch -> the (text, tokens) it continues
        self.checkpoints = list(checkpoints)  # every candidate is judged at each, in order
        self.step: dict[int, int] = {}  # candidate -> its next checkpoint's place in `checkpoints` (0 if absent)
        self.snapshots: dict[int, tuple[str, int]] = {}  # (text, tokens) at its next checkpoint, once reached
        self.crossed = asyncio.Event()
        self.followed: set[int] = set()  # committed leaders, whose every new text is streamed
        self.changed: set[int] = set()  # followed candidates with text not yet passed on
        self.passed: dict[int, str] = {}  # a followed candidate's text passed on as Deltas
        self.news = asyncio.Event()

    def queue(self, i: int, seconds: float) -> float:
        """Record what the engine says candidate i waited in its queue; returns it."""
        self.queued_s[i] = max(seconds, 0.0)
        return self.queued_s[i]

    def update(self, i: int, text: str, tokens: int) -> None:
        if i in self.prefixes:  # a branch reports what it adds: its text is the prefix's and that
            text, tokens = self.prefixes[i][0] + text, self.prefixes[i][1] + tokens
        self.latest[i] = (text, tokens)
        if tokens and i not in self.first_token_at:
            self.first_token_at[i] = time.time()
        at = self.next_checkpoint(i)
        if at is not None and tokens >= at and i not in self.snapshots:
            self.snapshots[i] = (text, tokens)
            self.crossed.set()
        if i in self.followed:
            self.changed.add(i)
            self.news.set()

    def next_checkpoint(self, i: int) -> int | None:
        step = self.step.get(i, 0)
        return self.checkpoints[step] if step < len(self.checkpoints) else None

    def due(self, running: set[int]) -> tuple[int, set[int]] | None:
        """The checkpoint to judge now and its candidates: the running ones furthest
        behind in the schedule, once each of them reached it. Candidates started together
        are judged together; a later wave is judged alone until it catches up."""
        steps = {i: self.step.get(i, 0) for i in running if self.next_checkpoint(i) is not None}
        if not steps:
            return None
        behind = min(steps.values())
        group = {i for i, step in steps.items() if step == behind}
        return (self.checkpoints[behind], group) if all(i in self.snapshots for i in group) else None

    def advance(self, group: set[int]) -> None:
        """The group on to its next checkpoint; those already past it are there now."""
        for i in group:
            self.step[i] = self.step.get(i, 0) + 1
            self.snapshots.pop(i, None)
            at, (text, tokens) = self.next_checkpoint(i), self.latest.get(i, ("", 0))
            if at is not None and tokens >= at:
                self.snapshots[i] = (text, tokens)

    def branch(self, i: int, text: str, tokens: int) -> None:
        """Candidate i continues `text` (`tokens` long): it has that text now and is next
        judged at the first checkpoint past it."""
        self.prefixes[i] = self.latest[i] = (text, tokens)
        self.step[i] = sum(at <= tokens for at in self.checkpoints)

    def whole(self, candidate: Candidate) -> Candidate:
        """A finished branch as the client sees it: the prefix it continued and its own text
        (its tokens stay those it generated: what it cost)."""
        prefix = self.prefixes.get(candidate.index)
        return candidate if prefix is None else replace(candidate, text=prefix[0] + candidate.text, branched=True)

    def stop_judging(self) -> None:
        self.checkpoints, self.snapshots = [], {}

    def follow(self, candidates: set[int]) -> None:
        self.followed = set(candidates)
        self.changed = {i for i in candidates if i in self.latest}
        self.news.set()

    def deltas(self) -> list[Delta]:
        """The followed candidates' new text since the last call: only what is new crosses
        to the reader (the whole text each time made a stream's bytes grow with the square
        of its length). Text that does not extend what was passed on waits until it does."""
        changed, self.changed = sorted(self.changed), set()
        self.news.clear()
        out = []
        for i in changed:
            text, tokens = self.latest[i]
            passed = self.passed.get(i, "")
            if len(text) > len(passed) and text.startswith(passed):
                out.append(Delta(i, text[len(passed):], tokens))
                self.passed[i] = text
        return out

    def partial(self, i: int, pruned_at: int = 0) -> Candidate:
        """Candidate i as far as it got: cut by the deadline, or pruned at checkpoint `pruned_at`."""
        text, tokens = self.latest.get(i, ("", 0))
        tokens -= self.prefixes.get(i, ("", 0))[1]  # what it generated itself
        return self.timed(Candidate(i, text, "length", tokens, finished=False, prompt_tokens=self.prompt_tokens,
                                    pruned=pruned_at > 0, pruned_at=pruned_at, branched=i in self.prefixes))

    def timed(self, candidate: Candidate) -> Candidate:
        """`candidate` with its timing, as it ends now."""
        i = candidate.index
        return replace(candidate, timing=CandidateTiming(self.started, self.first_token_at.get(i), time.time(),
                                                         self.queued_s.get(i)))


@dataclass(frozen=True)
class Judging:
    checkpoints: list[int]
    choose_victims: ChooseVictims | None
    commit: tuple[CommitPlan, ChooseLeaders | None] | None


def schedule(pruning: PruningPlan | None, commit: CommitPlan | None) -> list[int]:
    """The checkpoints a request's candidates are judged at: pruning's before the commit point, then it."""
    checkpoints = list(pruning.checkpoints) if pruning else []
    if commit is None:
        return checkpoints
    return [c for c in checkpoints if c < commit.at_tokens] + [commit.at_tokens]


async def race_deadline(
    runs: Sequence[Coroutine[Any, Any, Candidate]],
    deadline: Deadline,
    progress: Progress,
    judging: Judging | None = None,
    draw: Callable[..., Coroutine[Any, Any, Candidate]] | None = None,
) -> AsyncIterator[Candidate | Committed | Delta]:
    """Run one coroutine per candidate (each reporting to `progress`) and yield
    candidates as they finish.

    With `judging.choose_victims`, at each of progress's pruning checkpoints the running
    candidates' snapshots are judged and the victims cancelled and yielded as
    pruned partials; when the verdict draws more candidates, `draw(i)` starts
    candidate i (numbered on from the first runs), judged from the first checkpoint
    on; when it branches, `draw(i, (text, tokens))` starts one continuing a
    leader's snapshot, judged from the next checkpoint on. With `judging.commit`,
    at its checkpoint the leaders are chosen, the rest cancelled and yielded as
    pruned partials, `Committed` is yielded, and
    from then on the running leaders' new text as `Delta`s (no more than `leaders`
    candidates: committed at once). At the deadline the unfinished ones are
    cancelled and yielded as partials. Cancelling a run must abort its engine
    request; closing the iterator early cancels everything still running.
    """
    race = _Race(runs, progress, judging, draw)
    try:
        for event in race.start():
            yield event
        while race.running:
            done = await race.wait(deadline)
            events = await (race.settle(done) if done else race.stop_at_deadline())
            for event in events:
                yield event
    finally:
        await race.close()


class _Race:
    """One race_deadline's candidates, the ones still running and the checkpoint being judged."""

    def __init__(self, runs: Sequence[Coroutine[Any, Any, Candidate]], progress: Progress,
                 judging: Judging | None, draw: Callable[..., Coroutine[Any, Any, Candidate]] | None = None) -> None:
        self.choose_victims, self.commit = (judging.choose_victims, judging.commit) if judging else (None, None)
        self.progress = progress
        self.draw = draw
        # The checkpoint being judged, and its candidates' snapshots there.
        self.judged: tuple[int, dict[int, tuple[str, int]]] = (0, {})
        self.tasks = {asyncio.ensure_future(run): i for i, run in enumerate(runs)}
        self.running = set(self.tasks)
        self.finished: dict[int, str] = {}  # index -> text
        self.verdict_due: asyncio.Task | None = None  # judging the snapshots at the current checkpoint
        self.committing = False  # the current checkpoint is the commit point

    def start(self) -> list[Committed]:
        if self.commit is None or len(self.tasks) > self.commit[0].leaders:
            return []
        # Nothing to choose: stream from the first token, and nothing to prune either.
        self.progress.stop_judging()
        self.progress.follow(set(range(len(self.tasks))))
        return [Committed(tuple(range(len(self.tasks))), 0, len(self.tasks))]

    async def wait(self, deadline: Deadline) -> set[asyncio.Future]:
        """Until a candidate finishes, a verdict is in, a checkpoint is crossed or a leader
        writes more; empty when the deadline passed first."""
        waiters, helpers = set(self.running), []
        if self.progress.checkpoints and (self.choose_victims is not None or self.commit is not None):
            self._judge_if_reached()
            if self.verdict_due is not None:
                waiters.add(self.verdict_due)
            else:
                self.progress.crossed.clear()
                helpers.append(asyncio.ensure_future(self.progress.crossed.wait()))
        if self.progress.followed:
            helpers.append(asyncio.ensure_future(self.progress.news.wait()))
        try:
            done, _ = await asyncio.wait(waiters | set(helpers), timeout=max(deadline.remaining(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the race is closed while waiting: no waiter left pending
            for helper in helpers:
                helper.cancel()
        return done

    def _judge_if_reached(self) -> None:
        """Once the candidates due at the next checkpoint have all reached it, judge their snapshots."""
        running = {self.tasks[t] for t in self.running}
        due = None if self.verdict_due is not None else self.progress.due(running)
        if due is None:
            return
        at, group = due
        snapshot = {i: self.progress.snapshots[i] for i in group}
        self.judged = (at, snapshot)
        # A stream starts every candidate at once (no waves): its commit point judges them all.
        self.committing = self.commit is not None and at == self.commit[0].at_tokens
        if self.committing:
            self.verdict_due = asyncio.ensure_future(self.commit[1](snapshot, dict(self.finished)))
        else:
            texts = {i: text for i, (text, _) in snapshot.items()}
            others = len(self.finished) + len(running - group)
            self.verdict_due = asyncio.ensure_future(self.choose_victims(at, texts, others))

    async def settle(self, done: set[asyncio.Future]) -> list[Candidate | Committed | Delta]:
        """The leaders' new text, the candidates that finished, then the verdict if it is in."""
        events: list[Candidate | Committed | Delta] = list(self.progress.deltas()) if self.progress.followed else []
        for task in sorted(done & self.running, key=self.tasks.get):
            self.running.discard(task)
            candidate = self.progress.timed(self.progress.whole(task.result()))
            self.finished[candidate.index] = candidate.text
            events.append(candidate)
        if self.verdict_due is not None and self.verdict_due.done():
            events += await self._carry_out(self.verdict_due.result())
        return events

    async def _carry_out(self, verdict) -> list[Candidate | Committed]:
        """Cancel the victims (or at the commit point, all but the leaders) and yield them as
        pruned; start the candidates the verdict draws."""
        self.verdict_due = None
        at, snapshot = self.judged
        self.progress.advance(set(snapshot))
        if self.committing:
            victims = set() if verdict is None else {self.tasks[t] for t in self.running} - set(verdict[0])
        else:
            victims = set(verdict.victims)
            self._start([None] * verdict.draw + [snapshot[j] for j in verdict.branch_from])
            if verdict.draw or verdict.unsampled:
                metrics.ADAPTIVE_N.labels("drawn").inc(verdict.draw)
                metrics.ADAPTIVE_N.labels("unsampled").inc(verdict.unsampled)
        doomed = sorted((t for t in self.running if self.tasks[t] in victims), key=self.tasks.get)
        await _cancel(doomed, metrics.CANDIDATES_PRUNED)
        self.running.difference_update(doomed)
        events: list[Candidate | Committed] = [self.progress.partial(self.tasks[t], pruned_at=at) for t in doomed]
        if self.committing and verdict is not None:
            leaders, scores = verdict
            alive = len(self.running) + len(doomed) + len(self.finished)
            events.append(Committed(tuple(leaders), self.commit[0].at_tokens, alive, tuple(scores)))
            self.progress.stop_judging()
            self.progress.follow({self.tasks[t] for t in self.running})
        return events

    def _start(self, prefixes: list[tuple[str, int] | None]) -> None:
        """Start more candidates, numbered on from those started: fresh ones (None) or
        branches continuing a (text, tokens) snapshot."""
        if prefixes and self.draw is None:
            raise RuntimeError("the judge drew candidates, but this race cannot start more")
        for prefix in prefixes:
            i = len(self.tasks)
            if prefix is not None:
                self.progress.branch(i, *prefix)
                metrics.CANDIDATES_BRANCHED.inc()
            task = asyncio.ensure_future(self.draw(i) if prefix is None else self.draw(i, prefix))
            self.tasks[task] = i
            self.running.add(task)

    async def stop_at_deadline(self) -> list[Candidate]:
        await _cancel(self.running, metrics.CANDIDATES_ABORTED)
        partials = [self.progress.partial(self.tasks[t]) for t in sorted(self.running, key=self.tasks.get)]
        self.running.clear()
        return partials

    async def close(self) -> None:
        if self.verdict_due is not None:
            self.verdict_due.cancel()
        await _cancel([t for t in self.tasks if not t.done()], metrics.CANDIDATES_ABORTED)
        # When several candidates fail together the first error is raised; read the
        # others, so asyncio does not log each one as "never retrieved".
        for task in self.tasks:
            if task.done() and not task.cancelled():
                task.exception()


async def _cancel(tasks, counter) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        counter.inc(len(tasks))
        await asyncio.gather(*tasks, return_exceptions=True)
