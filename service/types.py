"""Plain value types shared by the generator, the reward models and selection."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence


@dataclass(frozen=True)
class Prompt:
    """A completion prompt (`text`) or a chat conversation (`messages`), never both.

    A prompt given as token ids carries them in `token_ids`: the generator samples
    from exactly those tokens, and `text` is their decoding, for the reward models
    (None until the generator decoded them).
    """

    text: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None
    token_ids: tuple[int, ...] | None = None
    # The longest answer the client allowed, when known: reward models that judge
    # length (slop's verbosity) measure against it.
    max_tokens: int | None = None

    def __post_init__(self):
        if self.messages is not None and (self.text is not None or self.token_ids is not None):
            raise ValueError("a Prompt has either text (or token ids) or messages")
        if self.messages is None and self.text is None and not self.token_ids:
            raise ValueError("a Prompt needs text, token ids or messages")

    @property
    def characters(self) -> int:
        if self.messages is not None:
            return sum(len(str(m.get("content", ""))) for m in self.messages)
        return len(self.text) if self.text is not None else 4 * len(self.token_ids)  # about 4 characters a token

    def last_user_text(self) -> str:
        """What the user asked: the prompt text or the last user message."""
        if self.messages is None:
            return self.text or ""
        for m in reversed(self.messages or ()):
            if m["role"] == "user":
                return m["content"]
        return ""


@dataclass(frozen=True)
class SamplingSpec:
    """How each candidate is sampled. Beyond the basics, the options carry vLLM's
    names and defaults; `engine_options` gives the ones a request changed."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    top_k: int = 0  # 0 or -1: every token
    min_p: float = 0.0
    min_tokens: int = 0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias): a tuple, so the spec stays frozen
    stop_token_ids: tuple[int, ...] = ()
    bad_words: tuple[str, ...] = ()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    logprobs: int | None = None  # None: none; k: each token's log probability and its k most likely alternatives
    json_object: bool = False  # every candidate a JSON object (vLLM's structured outputs)
    json_schema: str | None = None  # every candidate follows this JSON schema (its JSON text: the spec stays frozen)

    @property
    def wants_json(self) -> bool:
        return self.json_object or self.json_schema is not None

    ENGINE_OPTIONS = ("frequency_penalty", "presence_penalty", "repetition_penalty", "top_k", "min_p",
                      "min_tokens", "logit_bias", "stop_token_ids", "bad_words", "ignore_eos",
                      "include_stop_str_in_output", "skip_special_tokens")

    def engine_options(self) -> dict[str, Any]:
        """The options beyond the basics that differ from their defaults, as vLLM's
        SamplingParams and OpenAI server take them (lists and a dict, not tuples)."""
        out: dict[str, Any] = {}
        for name in self.ENGINE_OPTIONS:
            value = getattr(self, name)
            if value != getattr(SamplingSpec, name):
                out[name] = dict(value) if name == "logit_bias" else list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class TokenLogprob:
    """A sampled token, its log probability and the most likely alternatives at its place."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CandidateTiming:
    """Where one candidate's time went, in wall-clock seconds (comparable across processes)."""

    started: float  # its engine request was sent
    first_token: float | None  # its first token arrived (None: none did)
    ended: float  # finished, pruned or cut by the deadline
    queued_s: float | None = None  # waiting in the engine's queue before it was first scheduled (vLLM)


@dataclass(frozen=True)
class Candidate:
    """One sampled completion. `finished` is False when the deadline cut it short."""

    index: int
    text: str
    finish_reason: str
    completion_tokens: int
    finished: bool = True
    prompt_tokens: int = 0  # the same for every candidate of a request
    pruned: bool = False  # aborted at a pruning checkpoint for scoring low
    pruned_at: int = 0  # the checkpoint (tokens) it was pruned at
    branched: bool = False  # a branch: it continued another candidate's text (which its text starts with)
    logprobs: tuple[TokenLogprob, ...] | None = None  # one per token, when asked (finished candidates)
    timing: CandidateTiming | None = None  # set by the generator's race (service.generator.race)


@dataclass(frozen=True)
class Committed:
    """A generator's word that it committed to its leaders: every other running
    candidate was aborted, and the running leaders' text follows as `Delta`s."""

    leaders: tuple[int, ...]  # candidate indexes, best first
    at_tokens: int  # the commit point; 0 when there was nothing to choose (n candidates for n choices)
    alive: int  # candidates in the field (running or finished) when it committed
    scores: tuple[float, ...] = ()  # the leaders' partial rewards, as judged at the commit point


@dataclass(frozen=True)
class Delta:
    """A committed leader's new text since its previous Delta (the reader joins them)."""

    index: int
    text: str
    tokens: int


MAX_CHECKPOINTS = 16  # a request's or config's pruning checkpoints: each costs a scoring call


def check_checkpoints(checkpoints):
    """Pruning checkpoints are increasing token counts, from 1 up."""
    if not checkpoints or list(checkpoints) != sorted(set(checkpoints)) or checkpoints[0] < 1:
        raise ValueError("checkpoints must be increasing token counts >= 1")
    return checkpoints


class Combiner(Protocol):
    """Turns the components of a set of completions into their values, where a
    value depends on the other completions scored with it (see `Scores`)."""

    def combine(self, components: Mapping[str, list[float]]) -> list[float]: ...


@dataclass(frozen=True)
class Scores:
    """Rewards for a batch of completions, one value per completion, higher is better.

    `components` optionally breaks each value down (name -> one value per completion).
    `combiner`, when set, says the values are relative to the completions scored
    together (an ensemble's z-scores): `concat` then recomputes them over all the
    completions of a request that were scored in several calls.
    """

    values: list[float]
    components: Mapping[str, list[float]] = field(default_factory=dict)
    combiner: Combiner | None = None


def concat(parts: Sequence[Scores]) -> Scores:
    """The scores of several calls, in order, as if the completions were scored in one."""
    if len(parts) == 1:
        return parts[0]
    names = list(parts[0].components) if parts else []
    components = {name: [v for p in parts for v in p.components[name]] for name in names}
    combiner = parts[0].combiner if parts else None
    values = combiner.combine(components) if combiner else [v for p in parts for v in p.values]
    return Scores(values, components, combiner)


@dataclass(frozen=True)
class Deadline:
    """An absolute wall-clock deadline; wall clock so it means the same in every process."""

    at: float

    @classmethod
    def after_ms(cls, ms: float) -> "Deadline":
        return cls(time.time() + ms / 1000.0)

    def remaining(self) -> float:
        return self.at - time.time()

    def earlier_by(self, seconds: float) -> "Deadline":
        return Deadline(self.at - seconds)
