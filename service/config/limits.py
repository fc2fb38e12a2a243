"""What a request may ask for and the service's selection rules: caps, defaults, pruning, streams."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from service.config.base import Strict
from service.types import MAX_CHECKPOINTS, check_checkpoints


class Limits(Strict):
    best_of_default: int = Field(4, ge=1)
    best_of_max: int = Field(16, ge=1)
    max_tokens_default: int = Field(64, ge=1)
    max_tokens_max: int = Field(512, ge=1)
    latency_budget_ms_default: int = Field(30_000, ge=1)
    latency_budget_ms_max: int = Field(120_000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    rewards_max_completions: int = Field(64, ge=1, description="Completions per POST /v1/rewards.")
    batch_prompts_max: int = Field(16, ge=1, description="Prompts per POST /v1/completions (a batch).")
    saturation_candidates: int = Field(
        0, ge=0, description="Adaptive best_of: candidates generating at once past which new requests get "
        "fewer (0: off)."
    )
    best_of_floor: int = Field(
        1, ge=1, description="Adaptive best_of, admission and pruning never leave fewer candidates (nor fewer than n)."
    )
    response_margin_ms: int = Field(
        300, ge=0, description="Selection aims to finish this long before the deadline, leaving time for the "
        "answer to travel back through Ray and HTTP (at most a quarter of the budget)."
    )
    min_answer_chars: int = Field(
        1, ge=1, description="A candidate with fewer characters (whitespace aside) is degenerate: it never wins "
        "while a candidate that is not was produced, finished or cut short."
    )
    min_candidates: int = Field(
        1, ge=1, description="Candidates to see finish (deadline permitting): pruning and adaptive best_of "
        "never leave fewer."
    )

    @model_validator(mode="after")
    def _defaults_within_caps(self) -> "Limits":
        for name in ("best_of", "max_tokens", "latency_budget_ms"):
            if getattr(self, f"{name}_default") > getattr(self, f"{name}_max"):
                raise ValueError(f"{name}_default must not exceed {name}_max")
        return self


class NoiseConfig(Strict):
    """How uncertain a reward model's score of a text cut at so many tokens leaves the
    score of the text it becomes, in units of partial score: within a prompt, the
    residual spread of final on partial score over the regression's slope
    (loadtests/calibrate_pruning measures it)."""

    tokens: list[int] = Field(min_length=1)
    spread: list[float] = Field(min_length=1)

    _increasing = field_validator("tokens")(check_checkpoints)

    @model_validator(mode="after")
    def _same_length(self) -> "NoiseConfig":
        if len(self.tokens) != len(self.spread):
            raise ValueError("tokens and spread must have the same length")
        if min(self.spread) <= 0:
            raise ValueError("spread must be positive")
        return self


class ConfidenceRuleConfig(Strict):
    """The confidence rule: a candidate is aborted once its reward trails the leader's
    by more than `confidence` times the reward model's measured `noise` at that
    length; the ones that could still win stay. A reward model without `noise` is
    pruned by the fraction rule."""

    from_best_of: int = Field(
        2, ge=2, description="Requests with at least this many candidates are pruned by this rule, fewer by the "
        "fraction rule (where each measured better)."
    )
    checkpoints: list[int] = Field(
        default_factory=lambda: [8, 12, 16, 24, 32], min_length=1, max_length=MAX_CHECKPOINTS,
        description="Token counts at which the running candidates' partial texts are scored.",
    )
    confidence: float = Field(1.0, gt=0, description="A candidate stays while its reward is within this many "
                              "noise spreads of the leader's.")
    noise: dict[str, NoiseConfig] = Field(
        default_factory=dict, description="Per reward model name, its measured noise by length."
    )
    first_wave: int | None = Field(
        None, ge=1, description="Adaptive N (not streams): start this many candidates; at the first checkpoint "
        "draw the rest of best_of only if their rewards spread by more than `grow_at` noise spreads. null: start "
        "them all."
    )
    grow_at: float = Field(0.0, ge=0, description="Adaptive N: the spread, in noise spreads, that draws the rest.")

    _increasing = field_validator("checkpoints")(check_checkpoints)


class BranchRuleConfig(Strict):
    """The branch rule (TreeBoN-style), for requests that name it: at `at` tokens keep
    the `leaders` best candidates, abort the rest, and continue each leader's text
    with `per_leader` new candidates (new seeds, beyond best_of)."""

    at: int = Field(16, ge=1, description="Tokens at which the candidates are judged and the leaders branched.")
    leaders: int = Field(2, ge=1, le=8)
    per_leader: int = Field(2, ge=1, le=8, description="New candidates continuing each leader's text.")


class PruningConfig(Strict):
    """Early pruning (speculative rejection). Requests may turn it on or off and
    give their own rule (`pruning` in the request).

    The fraction rule (`checkpoints`, `fraction`) aborts that share of the running
    candidates at each checkpoint. With `confidence_rule`, requests of at least
    its `from_best_of` candidates are pruned by the confidence rule instead."""

    enabled: bool = False
    min_best_of: int = Field(
        8, ge=2, description="When enabled here, prune only requests with at least this many candidates "
        "(with few, pruning costs more reward than it saves); a request asking for pruning gets it regardless."
    )
    checkpoints: list[int] = Field(
        default_factory=lambda: [16], min_length=1, max_length=MAX_CHECKPOINTS,
        description="Fraction rule: token counts at which the running candidates' partial texts are scored.",
    )
    fraction: float = Field(0.5, gt=0, lt=1, description="Fraction rule: share of the running candidates aborted "
                            "at each checkpoint.")
    branch_rule: BranchRuleConfig | None = Field(
        None, description="The branch rule, for requests that ask for it (`rule: branch`); null: refused (400)."
    )
    confidence_rule: ConfidenceRuleConfig | None = Field(
        None, description="The confidence rule, for requests of at least its from_best_of candidates (and for "
        "requests that ask for it); null: the fraction rule only."
    )

    _increasing = field_validator("checkpoints")(check_checkpoints)


class StreamingConfig(Strict):
    """How a stream with candidates to choose from starts (a request may override it)."""

    commit: Literal["select", "leader"] = Field(
        "leader", description="leader: at `commit_tokens` keep the best-scoring candidates (n of them), abort "
        "the rest and stream the leaders' tokens as they come; select: stream only after selection, as a whole."
    )
    commit_tokens: int = Field(
        16, ge=1, description="The commit point, in tokens every running candidate has (loadtests/calibrate_commit)."
    )


# A ban list, or a request's own bad_words, holds at most this many words; the vLLM generator takes
# up to 128 banned token sequences of two tokens or more per request (service.generator.vllm).
