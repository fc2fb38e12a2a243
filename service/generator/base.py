"""The Generator interface: sample candidate completions for one prompt."""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, Coroutine, Sequence

from service import metrics
from service.types import Candidate, Deadline, Prompt, SamplingSpec


class Generator(ABC):
    """Samples `n` candidates for one prompt, yielding each once, as it finishes.

    Contract:
    - candidate i samples with seed `sampling.seed + i` when a seed is given, so a
      request with a seed is reproducible;
    - at `deadline` every unfinished candidate is aborted in the engine and yielded
      with its partial text and `finished=False`; so the stream always ends by the
      deadline (plus the time to abort);
    - closing the iterator early (client gone, caller cancelled) aborts every
      outstanding candidate: no tokens are generated for nobody;
    - a prompt the model cannot take raises `BadRequest` naming the parameter.
    """

    model_name: str
    max_model_len: int
    running: int = 0  # candidates generating right now, across requests

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

    @abstractmethod
    def generate(
        self, prompt: Prompt, sampling: SamplingSpec, n: int, deadline: Deadline
    ) -> AsyncIterator[Candidate]: ...

    async def check_ready(self) -> None:
        """Raise if the generator cannot serve (engine dead)."""


async def race_deadline(
    runs: Sequence[Coroutine[Any, Any, Candidate]],
    deadline: Deadline,
    partial: Callable[[int], Candidate],
) -> AsyncIterator[Candidate]:
    """Run one coroutine per candidate and yield candidates as they finish.

    At the deadline the unfinished ones are cancelled (which must abort their
    engine requests) and `partial(i)` is yielded for each. Closing the iterator
    early cancels everything still running.
    """
    tasks = {asyncio.ensure_future(run): i for i, run in enumerate(runs)}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=max(deadline.remaining(), 0), return_when=asyncio.FIRST_COMPLETED
            )
            for task in sorted(done, key=tasks.get):
                yield task.result()
            if not done:  # the deadline passed
                await _cancel(pending)
                for task in sorted(pending, key=tasks.get):
                    yield partial(tasks[task])
                return
    finally:
        await _cancel([t for t in tasks if not t.done()])


async def _cancel(tasks) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        metrics.CANDIDATES_ABORTED.inc(len(tasks))
        await asyncio.gather(*tasks, return_exceptions=True)
