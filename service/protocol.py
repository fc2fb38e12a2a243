"""OpenAI-compatible request and response models, plus prune's extensions.

Requests take the sampling fields of OpenAI's API and of vLLM's OpenAI server and
pass them to the generator (penalties, top_k, min_p, logit_bias, bans, JSON
outputs, ...). Every field OpenAI defines is honoured, refused with a 400 naming
it (echo, suffix, tools, audio, ...), or accepted and ignored for a reason the
field table of docs/api.md gives (store, metadata, ...); fields OpenAI does not define
are ignored, so newer clients work. Validators name the
offending parameter. The response bodies built from a selection are in
service.responses.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.errors import BadRequest
from service.types import MAX_CHECKPOINTS, Prompt, SamplingSpec, check_checkpoints

# A banned word or phrase is tokenized for the engine: long ones are refused before that.
MAX_BAD_WORD_CHARS = 100


class PruningRequest(BaseModel):
    """Early pruning for one request; what is left out comes from the config."""

    model_config = ConfigDict(extra="forbid")  # prune's own object: a typo is an error
    enabled: bool = True
    rule: Literal["fraction", "confidence", "branch"] | None = None
    checkpoints: list[int] | None = Field(None, min_length=1, max_length=MAX_CHECKPOINTS)
    fraction: float | None = Field(None, gt=0, lt=1)
    confidence: float | None = Field(None, gt=0, le=100)

    @field_validator("checkpoints")
    @classmethod
    def _increasing(cls, v):
        return v if v is None else check_checkpoints(v)

    @model_validator(mode="after")
    def _one_rule(self) -> "PruningRequest":
        if self.fraction is not None and self.confidence is not None:
            raise ValueError("fraction belongs to the fraction rule and confidence to the confidence rule: give one")
        for stray in ("fraction", "confidence"):
            if self.rule is not None and self.rule != stray and getattr(self, stray) is not None:
                raise ValueError(f"{stray} does not apply to the {self.rule} rule")
        if self.rule == "branch" and self.checkpoints is not None:
            raise ValueError("the branch rule judges at the config's branch_rule.at: checkpoints do not apply")
        return self


class StreamCommitRequest(BaseModel):
    """How one stream starts; what is left out comes from the config's `streaming`."""

    model_config = ConfigDict(extra="forbid")
    policy: Literal["select", "leader"] = "leader"
    at_tokens: int | None = Field(None, ge=1, le=4096)


class JsonSchemaFormat(BaseModel):
    """OpenAI's `response_format.json_schema`: the schema every candidate follows."""

    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON schema (vLLM's structured outputs).")
    strict: bool | None = None  # vLLM's grammar always holds candidates to the schema


class ResponseFormat(BaseModel):
    """text (the default), json_object (any JSON object) or json_schema: every candidate is
    sampled under vLLM's structured outputs, and only ones that parse are chosen while any does."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_for_json_schema(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object with name and schema")
        return self

    def schema_text(self) -> str | None:
        # Not key-sorted: the order of a schema's properties is the order the model writes them in.
        return json.dumps(self.json_schema.schema_) if self.type == "json_schema" else None


class RerankRequest(BaseModel, ABC):
    """What the completion and chat requests share: everything a Reranker plans from."""

    # OpenAI adds fields often; an unknown field is ignored, never a 400.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Served model id (see GET /v1/models).")
    max_tokens: int | None = Field(None, ge=1, description="New tokens per candidate.")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, description="Choices returned: the n best distinct candidates.")
    stop: str | list[str] | None = None
    seed: int | None = Field(None, description="Candidate i samples with seed + i.")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    # prune's extensions
    best_of: int | None = Field(None, ge=1, description="Candidates to sample and score.")
    latency_budget_ms: int | None = Field(None, ge=1, description="Answer within this many ms.")
    reward_model: str | None = Field(None, description="A configured reward model name.")
    return_candidates: bool = Field(False, description="Include every scored candidate.")
    pruning: PruningRequest | None = Field(
        None, description="Early pruning: true/false turns the configured schedule on/off; an object sets it."
    )

    # Sampling options, by the names vLLM's OpenAI server takes (OpenAI's own: the penalties, logit_bias).
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    repetition_penalty: float = Field(1.0, gt=0, le=2)
    top_k: int = Field(0, ge=-1, description="0 or -1: every token.")
    min_p: float = Field(0.0, ge=0, le=1)
    min_tokens: int = Field(0, ge=0, description="Tokens before EOS or a stop may end a candidate; <= max_tokens.")
    logit_bias: dict[str, float] | None = Field(None, description="Token id (as a string) -> bias in [-100, 100].")
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(None, max_length=64)
    bad_words: list[Annotated[str, Field(max_length=MAX_BAD_WORD_CHARS)]] | None = Field(
        None, max_length=64, description="Words never sampled (banned in the engine, with the request's ban list); "
        f"each at most {MAX_BAD_WORD_CHARS} characters."
    )
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    bans: str | bool | None = Field(
        None, description="A configured ban list's name (its words are never sampled), false for none; default: "
        "the config's default_bans."
    )
    response_format: ResponseFormat | None = None
    # OpenAI fields prune cannot honour yet: accepted only at their do-nothing values, else a 400 naming them.
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None

    stream_commit: StreamCommitRequest | None = Field(
        None, description="Streams: 'leader' commits to the best partial candidates at a commit point and streams "
        "them as they are made; 'select' streams after selection; an object sets the commit point (at_tokens)."
    )

    @field_validator("stream_commit", mode="before")
    @classmethod
    def _commit_policy(cls, v):
        return {"policy": v} if isinstance(v, str) else v

    @field_validator("pruning", mode="before")
    @classmethod
    def _pruning_switch(cls, v):
        if isinstance(v, bool):
            return {"enabled": v}
        if v is not None and not isinstance(v, dict):
            raise ValueError("pruning must be true, false or an object (rule, checkpoints, fraction, confidence)")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, v):
        if v is None:
            return v
        if len(v) > 300:
            raise ValueError("at most 300 token biases")
        for token, bias in v.items():
            if not token.isdigit():
                raise ValueError(f"keys must be token ids (digits), not {token[:20]!r}")
            if not -100 <= bias <= 100:
                raise ValueError("biases must lie in [-100, 100]")
        return v

    @field_validator("bad_words")
    @classmethod
    def _words(cls, v):
        if v is not None and any(not w.strip() for w in v):
            raise ValueError("bad_words must be non-empty")
        return v

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, v):
        if v:
            raise ValueError("tool calling is not supported")
        return v

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, v):
        if v not in (None, "none"):
            raise ValueError("tool calling is not supported")
        return v

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v):
        if v is None:
            return []
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return stops

    @abstractmethod
    def to_prompt(self) -> Prompt:
        """The prompt or conversation, in the shape of the request's endpoint."""

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def logprob_count(self) -> int | None:
        """None: no log probabilities; k: each token's and its k most likely alternatives."""
        return None

    def sampling(self, max_tokens: int) -> SamplingSpec:
        if self.min_tokens > max_tokens:
            raise reject("min_tokens", f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({max_tokens})")
        fmt = self.response_format or ResponseFormat(type="text")
        return SamplingSpec(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop or ()),
            seed=self.seed,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            repetition_penalty=self.repetition_penalty,
            top_k=self.top_k,
            min_p=self.min_p,
            min_tokens=self.min_tokens,
            logit_bias=tuple((int(token), bias) for token, bias in (self.logit_bias or {}).items()),
            stop_token_ids=tuple(self.stop_token_ids or ()),
            bad_words=tuple(self.bad_words or ()),
            ignore_eos=self.ignore_eos,
            include_stop_str_in_output=self.include_stop_str_in_output,
            skip_special_tokens=self.skip_special_tokens,
            logprobs=self.logprob_count(),
            json_object=fmt.type == "json_object",
            json_schema=fmt.schema_text(),
        )


TokenId = Annotated[int, Field(ge=0)]


class CompletionRequest(RerankRequest):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(
        description="The prompt: text or token ids; or a batch, a list of texts or of token-id lists, each "
        "reranked on its own."
    )
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = Field(None, ge=0, le=20, description="Log probabilities of the chosen tokens and the "
                                 "k most likely at each place.")

    def logprob_count(self) -> int | None:
        return self.logprobs

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompts(cls, v):
        # Checked before the union's own validation, so the message names what is wrong.
        batch = v if isinstance(v, list) and v and isinstance(v[0], (str, list)) else [v]
        for one in batch:
            if not (isinstance(one, str) or (isinstance(one, list) and all(type(t) is int and t >= 0 for t in one))):
                raise ValueError("prompt must be a string, a list of token ids (integers >= 0), or a list of either")
            if not one:
                raise ValueError("prompt must not be empty")
        if len({type(one) for one in batch}) > 1:
            raise ValueError("a batch of prompts is all strings or all token-id lists")
        return batch[0] if len(batch) == 1 else batch

    @field_validator("echo", "suffix")
    @classmethod
    def _not_honoured(cls, v, info):
        if v:
            why = {"echo": "the answer is the chosen completion alone", "suffix": "insertion is not supported"}
            raise ValueError(f"{info.field_name} is not supported: {why[info.field_name]}")
        return v

    def batch(self) -> list["CompletionRequest"]:
        """One request per prompt: a batch of several, or this one alone."""
        is_batch = isinstance(self.prompt, list) and self.prompt and isinstance(self.prompt[0], (str, list))
        if not is_batch:
            return [self]
        return [self.model_copy(update={"prompt": one}) for one in self.prompt]

    def to_prompt(self) -> Prompt:
        if isinstance(self.prompt, list):  # token ids: the generator decodes them for the reward models
            return Prompt(token_ids=tuple(self.prompt))
        return Prompt(text=self.prompt)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(None, description="Ignored: the chat template reads role and content.")

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, v):
        # Checked here, so every request that carries messages refuses image or audio parts with a 400.
        for part in v if isinstance(v, list) else ():
            if part.get("type") != "text":
                raise ValueError(f"content part type {part.get('type')!r} is not supported; use text")
        return v

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(part.get("text", "")) for part in self.content)


def messages_prompt(messages: list[ChatMessage]) -> Prompt:
    # "developer" is OpenAI's newer name for "system"; chat templates know only the latter.
    return Prompt(
        messages=tuple({"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages)
    )


# OpenAI's chat fields that ask for what prune does not do: a 400 naming the field when set.
CHAT_REFUSED = {
    "audio": "prune answers in text only",
    "reasoning_effort": "the served model does not reason in a separate channel",
    "verbosity": "answer length is max_tokens and the reward model's choice",
    "web_search_options": "prune does not search the web",
    "moderation": "prune runs no moderation",
}


class ChatCompletionRequest(RerankRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = Field(None, description="Log probabilities of the chosen answer's tokens.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="With logprobs: the k most likely at each place.")
    # OpenAI fields accepted and ignored, each for the reason docs/api.md's field table gives.
    store: bool | None = Field(None, description="Ignored: prune stores no completions.")
    metadata: dict[str, str] | None = Field(None, description="Ignored: prune stores no completions to tag.")
    service_tier: str | None = Field(None, description="Ignored: every request is served alike.")
    safety_identifier: str | None = Field(None, description="Ignored, like user: not logged, not used.")
    prompt_cache_key: str | None = Field(None, description="Ignored: the engine's prefix cache needs no key.")
    prompt_cache_retention: str | None = Field(None, description="Ignored: the engine's prefix cache is its own.")
    prompt_cache_options: Any = Field(None, description="Ignored: the engine's prefix cache is its own.")
    parallel_tool_calls: bool | None = Field(None, description="Ignored: tools are refused, so no tool calls.")
    prediction: Any = Field(None, description="Ignored: a latency hint; the answer is the same without it.")
    modalities: list[str] | None = Field(None, description='["text"] only (the default).')
    # Refused when set (CHAT_REFUSED).
    audio: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None
    moderation: Any = None

    @field_validator(*CHAT_REFUSED)
    @classmethod
    def _not_done(cls, v, info):
        if v is not None:
            raise ValueError(f"{info.field_name} is not supported: {CHAT_REFUSED[info.field_name]}")
        return v

    @field_validator("modalities")
    @classmethod
    def _text_only(cls, v):
        if v is not None and set(v) != {"text"}:
            raise ValueError("modalities: prune answers in text only")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, v, info):
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def to_prompt(self) -> Prompt:
        return messages_prompt(self.messages)

    def requested_max_tokens(self) -> int | None:
        if self.max_tokens is not None and self.max_completion_tokens is not None:  # as OpenAI answers it
            raise BadRequest("Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
                             param="max_tokens", code="invalid_parameter_combination")
        return self.max_completion_tokens or self.max_tokens


class RewardsRequest(BaseModel):
    """POST /v1/rewards: score given completions of one prompt or conversation."""

    model_config = ConfigDict(extra="forbid")
    reward_model: str | None = Field(None, description="A configured reward model name; default if absent.")
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    completions: list[str] = Field(min_length=1)

    def to_prompt(self) -> Prompt:
        if (self.prompt is None) == (self.messages is None):
            raise reject("prompt", "give exactly one of prompt or messages")
        if self.messages is not None:
            return messages_prompt(self.messages)
        return Prompt(text=self.prompt)


# --- responses ---------------------------------------------------------------


class CandidateReport(BaseModel):
    text: str
    score: float
    finish_reason: str
    completion_tokens: int


class PrunedReport(BaseModel):
    text: str = Field(description="As far as it got before it was pruned.")
    completion_tokens: int


class CommitReport(BaseModel):
    at_tokens: int = Field(description="Tokens each running candidate had when the stream committed (0: nothing to choose).")
    at_ms: float = Field(description="When it committed, in ms since the request arrived.")
    candidates_alive: int = Field(description="Candidates in the field (running or finished) at the commit.")
    leader_scores: list[float] = Field(description="The leaders' partial rewards at the commit point.")


class Reranking(BaseModel):
    best_of: int
    effective_best_of: int = Field(description="Candidates actually sampled: lower than best_of under load.")
    candidates_generated: int
    candidates_scored: int
    reward_model: str
    scores: list[float] = Field(description="One per returned choice, in the same order.")
    elapsed_ms: float
    budget_ms: int = Field(description="The latency budget used: the request's, or the configured default.")
    deadline_ms: int = Field(description="The deadline used, in Unix milliseconds.")
    stopped_early: bool = Field(description="The deadline cut at least one candidate short.")
    candidates_pruned: int = Field(description="Candidates aborted early for scoring low at a pruning checkpoint.")
    pruned_at: dict[int, int] = Field(
        default_factory=dict, description="How many candidates were pruned at each checkpoint (key: its tokens).")
    first_wave: int | None = Field(
        None, description="Adaptive N: the candidates started at once; the rest of effective_best_of only if "
        "their rewards spread at the first checkpoint. null: all started at once.")
    candidates_branched: int = Field(
        0, description="Branch rule: candidates that continued a leader's text with new seeds (beyond "
        "effective_best_of; counted in candidates_generated).")
    candidates_drawn_late: int = Field(
        0, description="Adaptive N: candidates started after the first wave, because its rewards spread "
        "(0 with a first wave: it agreed, and the rest were never sampled).")
    degraded: str | None = Field(
        None, description="Scored by the fallback reward instead of reward_model: scorer_unavailable or scorer_slow."
    )
    commit: CommitReport | None = Field(None, description="Streams that committed to their leaders early.")
    timings: dict[str, float | list[float] | None] = Field(
        default_factory=dict, description="Where the time went, in ms: admission, first_token, queue and prefill "
        "(the longest; where the engine reports them), generation, scoring (each reward call), selection.")
    candidates: list[CandidateReport] | None = None
    pruned: list[PrunedReport] | None = Field(
        None, description="With return_candidates: the candidates pruned early for a weak start, as far as they got."
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = Field(description="Every token of every candidate: what the request cost.")
    total_tokens: int


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def reject(param: str, message: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(message, param=param, code=code)
