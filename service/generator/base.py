"""The Generator interface: sample candidate completions for one prompt."""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Coroutine, Sequence

from service import metrics
from service.errors import BadRequest
from service.types import Candidate, Deadline, Prompt, SamplingSpec

if TYPE_CHECKING:
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
        self, prompt: Prompt, sampling: SamplingSpec, n: int, deadline: Deadline, pruning: PruningPlan | None = None
    ) -> AsyncIterator[Candidate]: ...

    async def check_ready(self) -> None:
        """Raise if the generator cannot serve (engine dead)."""

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a prompt given as token ids (for the reward models); a 400
        naming `prompt` for ids the model does not have."""
        raise BadRequest("this generator does not take prompts as token ids; send text", param="prompt",
                         code="token_prompts_unsupported")


class Progress:
    """Each candidate's text so far: the partial answer at the deadline, and the
    snapshots that early pruning scores at its checkpoints."""

    def __init__(self, prompt_tokens: int, checkpoints: Sequence[int] = ()):
        self.prompt_tokens = prompt_tokens
        self.latest: dict[int, tuple[str, int]] = {}  # candidate -> (text, tokens)
        self.checkpoints = list(checkpoints)  # still to come
        self.snapshots: dict[int, str] = {}  # text at the next checkpoint, once reached
        self.crossed = asyncio.Event()

    def update(self, i: int, text: str, tokens: int) -> None:
        self.latest[i] = (text, tokens)
        if self.checkpoints and tokens >= self.checkpoints[0] and i not in self.snapshots:
            self.snapshots[i] = text
            self.crossed.set()

    def reached(self, candidates: set[int]) -> bool:
        return bool(self.checkpoints) and all(i in self.snapshots for i in candidates)

    def advance(self) -> None:
        """On to the next checkpoint; candidates already past it are there now."""
        self.checkpoints.pop(0)
        self.snapshots = {}
        for i, (text, tokens) in self.latest.items():
            if self.checkpoints and tokens >= self.checkpoints[0]:
                self.snapshots[i] = text

    def partial(self, i: int, pruned: bool = False) -> Candidate:
        text, tokens = self.latest.get(i, ("", 0))
        return Candidate(i, text, "length", tokens, finished=False, prompt_tokens=self.prompt_tokens, pruned=pruned)


async def race_deadline(
    runs: Sequence[Coroutine[Any, Any, Candidate]],
    deadline: Deadline,
    progress: Progress,
    choose_victims: ChooseVictims | None = None,
) -> AsyncIterator[Candidate]:
    """Run one coroutine per candidate (each reporting to `progress`) and yield
    candidates as they finish.

    With `choose_victims`, at each of progress's checkpoints the running
    candidates' snapshots are judged and the victims cancelled and yielded as
    pruned partials. At the deadline the unfinished ones are cancelled and
    yielded as partials. Cancelling a run must abort its engine request; closing
    the iterator early cancels everything still running.
    """
    tasks = {asyncio.ensure_future(run): i for i, run in enumerate(runs)}
    running = set(tasks)
    finished = 0
    judging: asyncio.Task | None = None  # choosing victims at the current checkpoint
    try:
        while running:
            waiters = set(running)
            crossed = None
            if choose_victims is not None and progress.checkpoints:
                if judging is None and progress.reached({tasks[t] for t in running}):
                    snapshot = {tasks[t]: progress.snapshots[tasks[t]] for t in running}
                    judging = asyncio.ensure_future(choose_victims(snapshot, finished))
                if judging is not None:
                    waiters.add(judging)
                else:
                    progress.crossed.clear()
                    crossed = asyncio.ensure_future(progress.crossed.wait())
                    waiters.add(crossed)
            done, _ = await asyncio.wait(
                waiters, timeout=max(deadline.remaining(), 0), return_when=asyncio.FIRST_COMPLETED
            )
            if crossed is not None:
                crossed.cancel()
            if not done:  # the deadline passed
                await _cancel(running, metrics.CANDIDATES_ABORTED)
                for task in sorted(running, key=tasks.get):
                    yield progress.partial(tasks[task])
                return
            for task in sorted(done & running, key=tasks.get):
                running.discard(task)
                finished += 1
                yield task.result()
            if judging is not None and judging.done():
                victims = set(judging.result())
                judging = None
                progress.advance()
                doomed = [t for t in running if tasks[t] in victims]
                await _cancel(doomed, metrics.CANDIDATES_PRUNED)
                for task in sorted(doomed, key=tasks.get):
                    running.discard(task)
                    yield progress.partial(tasks[task], pruned=True)
    finally:
        if judging is not None:
            judging.cancel()
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
