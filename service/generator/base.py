"""The Generator interface: sample candidate completions for one prompt.

Engines implement it as a race of one run per candidate (service.generator.race);
the Ray app's adapter over the generator deployment implements it as a stream.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, AsyncIterator, Sequence

from service.errors import BadRequest
from service.types import Candidate, Committed, Deadline, Delta, Prompt, SamplingSpec

if TYPE_CHECKING:
    from service.commit import CommitPlan
    from service.pruning import PruningPlan
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

    async def check_ready(self) -> None:
        """Raise if the generator cannot serve (engine dead)."""

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a prompt given as token ids (for the reward models); a 400
        naming `prompt` for ids the model does not have."""
        raise BadRequest("this generator does not take prompts as token ids; send text", param="prompt",
                         code="token_prompts_unsupported")
