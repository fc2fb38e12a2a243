"""The Generator interface: sample candidate completions for one prompt."""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Coroutine, Sequence

from service import metrics
from service.errors import BadRequest
from service.types import Candidate, Committed, Deadline, Delta, Prompt, SamplingSpec

if TYPE_CHECKING:
    from service.commit import ChooseLeaders, CommitPlan
    from service.pruning import ChooseVictims, PruningPlan
    from service.reward.catalog import RewardCatalog


class Generator(ABC):
    """Samples `n` candidates for one prompt, yielding each once, as it finishes.

    Contract:
    - candidate i samples with seed `sampling.seed + i` when a seed is given, so a
      request with a seed is reproducible;
    - at `deadline` every unfinished candidate is aborted in the engine and yielded
      with its partial text and `finished=False`; so the stream always ends by the
      deadline (plus the time to abort);
    - with `pruning`, at each checkpoint the lowest-scoring running candidates are
      aborted and yielded with `pruned=True` and their partial text; they are
      judged by `judge`, the reward catalog the generator was built with;
    - with `commit` (a stream), at its commit point the leaders are judged, the
      others aborted and yielded as pruned, then `Committed` and the running
      leaders' text as `Delta`s as it grows (see service.commit);
    - closing the iterator early (client gone, caller cancelled) aborts every
      outstanding candidate: no tokens are generated for nobody;
    - a prompt the model cannot take raises `BadRequest` naming the parameter.
    """

    model_name: str
    max_model_len: int
    running: int = 0  # candidates generating right now, across requests
    judge: RewardCatalog | None = None  # scores partial texts for pruning

    @contextlib.contextmanager
    def running_candidate(self):
        """Count a candidate as load while it generates (see `load`)."""
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1

    async def load(self) -> int:
        """Candidates generating right now: what adaptive best_of reacts to."""
        return self.running

    async def start(self) -> None:
        """Load weights, start engines. Called once before the first request."""

    def shutdown(self) -> None:
        """Stop engines and their processes; the generator serves no more."""

    @abstractmethod
    def generate(
        self, prompt: Prompt, sampling: SamplingSpec, n: int, deadline: Deadline,
        pruning: PruningPlan | None = None, commit: CommitPlan | None = None,
    ) -> AsyncIterator[Candidate | Committed | Delta]: ...

    def judging(self, prompt: Prompt, n: int, pruning: PruningPlan | None, commit: CommitPlan | None) -> Judging:
        """The checkpoints and judges of a request's candidates, for `race_deadline`."""
        choose = pruning.chooser(self.judge, prompt) if pruning else None
        # With no more candidates than leaders nothing is judged (no judge needed).
        leaders = None if commit is None or n <= commit.keep else commit.chooser(self.judge, prompt)
        return Judging(schedule(pruning, commit), choose, None if commit is None else (commit, leaders))

    async def check_ready(self) -> None:
        """Raise if the generator cannot serve (engine dead)."""

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a prompt given as token ids (for the reward models); a 400
        naming `prompt` for ids the model does not have."""
        raise BadRequest("this generator does not take prompts as token ids; send text", param="prompt",
                         code="token_prompts_unsupported")


class Progress:
    """Each candidate's text so far: the partial answer at the deadline, the
    snapshots that pruning and the commit judge at their checkpoints, and, once a
    stream committed, which of the followed leaders have new text."""

    def __init__(self, prompt_tokens: int, checkpoints: Sequence[int] = ()):
        self.prompt_tokens = prompt_tokens
        self.latest: dict[int, tuple[str, int]] = {}  # candidate -> (text, tokens)
        self.checkpoints = list(checkpoints)  # still to come
        self.snapshots: dict[int, tuple[str, int]] = {}  # (text, tokens) at the next checkpoint, once reached
        self.crossed = asyncio.Event()
        self.followed: set[int] = set()  # committed leaders, whose every new text is streamed
        self.changed: set[int] = set()  # followed candidates with text not yet passed on
        self.news = asyncio.Event()

    def update(self, i: int, text: str, tokens: int) -> None:
        self.latest[i] = (text, tokens)
        if self.checkpoints and tokens >= self.checkpoints[0] and i not in self.snapshots:
            self.snapshots[i] = (text, tokens)
            self.crossed.set()
        if i in self.followed:
            self.changed.add(i)
            self.news.set()

    def reached(self, candidates: set[int]) -> bool:
        return bool(self.checkpoints) and all(i in self.snapshots for i in candidates)

    def advance(self) -> None:
        """On to the next checkpoint; candidates already past it are there now."""
        self.checkpoints.pop(0)
        self.snapshots = {}
        for i, (text, tokens) in self.latest.items():
            if self.checkpoints and tokens >= self.checkpoints[0]:
                self.snapshots[i] = (text, tokens)

    def follow(self, candidates: set[int]) -> None:
        self.followed = set(candidates)
        self.changed = {i for i in candidates if i in self.latest}
        self.news.set()

    def deltas(self) -> list[Delta]:
        """The followed candidates' new text since the last call."""
        changed, self.changed = sorted(self.changed), set()
        self.news.clear()
        return [Delta(i, *self.latest[i]) for i in changed]

    def partial(self, i: int, pruned: bool = False) -> Candidate:
        text, tokens = self.latest.get(i, ("", 0))
        return Candidate(i, text, "length", tokens, finished=False, prompt_tokens=self.prompt_tokens, pruned=pruned)


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
) -> AsyncIterator[Candidate | Committed | Delta]:
    """Run one coroutine per candidate (each reporting to `progress`) and yield
    candidates as they finish.

    With `judging.choose_victims`, at each of progress's pruning checkpoints the running
    candidates' snapshots are judged and the victims cancelled and yielded as
    pruned partials. With `judging.commit`, at its checkpoint the leaders are chosen, the
    rest cancelled and yielded as pruned partials, `Committed` is yielded, and
    from then on the running leaders' new text as `Delta`s (no more than `keep`
    candidates: committed at once). At the deadline the unfinished ones are
    cancelled and yielded as partials. Cancelling a run must abort its engine
    request; closing the iterator early cancels everything still running.
    """
    choose_victims, commit = (judging.choose_victims, judging.commit) if judging else (None, None)
    tasks = {asyncio.ensure_future(run): i for i, run in enumerate(runs)}
    running = set(tasks)
    finished: dict[int, str] = {}  # index -> text
    verdict_due: asyncio.Task | None = None  # judging the snapshots at the current checkpoint
    committing = False  # the current checkpoint is the commit point
    try:
        if commit is not None and len(tasks) <= commit[0].keep:  # nothing to choose: stream from the first token
            yield Committed(tuple(range(len(tasks))), 0, len(tasks))
            progress.checkpoints = []  # nothing to prune either: every candidate is a leader
            progress.follow(set(range(len(tasks))))
        while running:
            waiters = set(running)
            crossed = news = None
            if progress.checkpoints and (choose_victims is not None or commit is not None):
                if verdict_due is None and progress.reached({tasks[t] for t in running}):
                    snapshot = {tasks[t]: progress.snapshots[tasks[t]] for t in running}
                    committing = commit is not None and progress.checkpoints[0] == commit[0].at_tokens
                    if committing:
                        verdict_due = asyncio.ensure_future(commit[1](snapshot, dict(finished)))
                    else:
                        texts = {i: text for i, (text, _) in snapshot.items()}
                        verdict_due = asyncio.ensure_future(choose_victims(texts, len(finished)))
                if verdict_due is not None:
                    waiters.add(verdict_due)
                else:
                    progress.crossed.clear()
                    crossed = asyncio.ensure_future(progress.crossed.wait())
                    waiters.add(crossed)
            if progress.followed:
                news = asyncio.ensure_future(progress.news.wait())
                waiters.add(news)
            try:
                done, _ = await asyncio.wait(
                    waiters, timeout=max(deadline.remaining(), 0), return_when=asyncio.FIRST_COMPLETED
                )
            finally:  # also when this is closed while waiting: no waiter left pending
                for waiter in (crossed, news):
                    if waiter is not None:
                        waiter.cancel()
            if not done:  # the deadline passed
                await _cancel(running, metrics.CANDIDATES_ABORTED)
                for task in sorted(running, key=tasks.get):
                    yield progress.partial(tasks[task])
                return
            for delta in progress.deltas() if progress.followed else ():
                yield delta
            for task in sorted(done & running, key=tasks.get):
                running.discard(task)
                candidate = task.result()
                finished[candidate.index] = candidate.text
                yield candidate
            if verdict_due is not None and verdict_due.done():
                verdict, verdict_due = verdict_due.result(), None
                progress.advance()
                if committing:
                    victims = set() if verdict is None else {tasks[t] for t in running} - set(verdict[0])
                else:
                    victims = set(verdict)
                doomed = [t for t in running if tasks[t] in victims]
                await _cancel(doomed, metrics.CANDIDATES_PRUNED)
                for task in sorted(doomed, key=tasks.get):
                    running.discard(task)
                    yield progress.partial(tasks[task], pruned=True)
                if committing and verdict is not None:
                    leaders, scores = verdict
                    alive = len(running) + len(doomed) + len(finished)
                    yield Committed(tuple(leaders), commit[0].at_tokens, alive, tuple(scores))
                    progress.checkpoints = []
                    progress.follow({tasks[t] for t in running})
    finally:
        if verdict_due is not None:
            verdict_due.cancel()
        await _cancel([t for t in tasks if not t.done()], metrics.CANDIDATES_ABORTED)
        # When several candidates fail together the first error is raised; read the
        # others, so asyncio does not log each one as "never retrieved".
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()


async def _cancel(tasks, counter) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        counter.inc(len(tasks))
        await asyncio.gather(*tasks, return_exceptions=True)
