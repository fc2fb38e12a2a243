"""The prune application's `args` as one model, and reading them from a Ray Serve config file."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.config.admission import AdmissionConfig
from service.config.bans import BanListConfig
from service.config.base import ConfigError, Strict
from service.config.callers import CallerConfig, check_callers
from service.config.deployments import DeploymentConfig, IngressConfig, ScorerConfig
from service.config.generators import GeneratorConfig, VLLMGeneratorConfig
from service.config.limits import Limits, PruningConfig, StreamingConfig
from service.config.rewards import (
    EnsembleRewardConfig,
    PartialOffsetsConfig,
    RewardConfig,
    RewardsConfig,
    SlopRewardConfig,
    check_reward_models,
    default_reward_models,
)


class TracingConfig(Strict):
    """OpenTelemetry spans of every answered request (service.tracing), sent to a
    collector over OTLP/HTTP; off by default, and then free."""

    enabled: bool = False
    otlp_endpoint: str = Field("http://127.0.0.1:4318/v1/traces", description="The collector's OTLP/HTTP traces URL.")
    service_name: str = Field("prune", min_length=1)
    sample_ratio: float = Field(1.0, gt=0, le=1, description="Share of requests traced (by trace id).")


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
    allow_anonymous: bool = Field(
        False, description="Serve without keys on an address beyond loopback: anyone who reaches the port "
        "spends the GPU. Without it, such a config must name `callers` with keys from key_env or key_file."
    )
    docs: bool = Field(
        True, description="Serve /docs, /redoc and /openapi.json (with keys configured, they need a key too)."
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
    metrics_token_env: str | None = Field(
        None, description="Environment variable holding a bearer token each node's metrics exporter then "
        "requires (Prometheus `authorization`); null: the exporters answer anyone who reaches the port."
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
        noise = self.pruning.confidence_rule.noise if self.pruning.confidence_rule else {}
        for field, named in (("partial_offsets", self.partial_offsets), ("pruning.confidence_rule.noise", noise)):
            unknown = sorted(set(named) - set(self.reward_models))
            if unknown:
                raise ValueError(f"{field}: {', '.join(unknown)} is not a configured reward model")
        if isinstance(self.fallback_reward, EnsembleRewardConfig):
            raise ValueError("fallback_reward: an ensemble needs its members; give a single kind, e.g. {kind: slop}")
        return self

    def rewards(self) -> "RewardsConfig":
        return RewardsConfig(reward_models=self.reward_models, default_reward_model=self.default_reward_model)


def _validated(model: type[BaseModel], data: dict[str, Any]):
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("invalid prune config:\n" + "\n".join(lines)) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: whatever it resolves to, it is not known to be loopback
        return False


def check_exposure(host: str, config: ServiceConfig) -> None:
    """A service listening beyond loopback needs keys (callers reading them from the
    environment or a file), or to say `allow_anonymous: true`; ConfigError otherwise.
    The launcher (`make serve`, `python -m service.serve`) checks the host it listens on;
    `serve deploy` and KubeRay do not run it (build_app cannot see the HTTP options):
    deploy/gpu.yaml names its callers, and a test keeps it so."""
    if is_loopback(host) or config.allow_anonymous or any(c.key_env or c.key_file for c in config.callers):
        return
    raise ConfigError(
        f"http_options.host {host!r} listens beyond loopback without keys: name `callers` whose keys come "
        "from key_env or key_file (docs/api.md: Callers), or set `allow_anonymous: true` to serve anyone who "
        "reaches the port"
    )


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
