"""`build_app`, the application builder named in deploy/*.yaml: the deployments of
service.deployments, each with the options its part of the config gives it.

Three thin deployments, each scaled on its own (generator, scorer, ingress), and the
callers' ledger (one replica).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from service import node_metrics
from service.callers import CallerLedger, limits_of
from service.config import ServiceConfig, cache_dir, parse_config
from service.deployments import GeneratorServer, Ingress, ScorerServer


def metrics_dir(config: ServiceConfig) -> Path:
    return Path(config.metrics_dir) if config.metrics_dir else cache_dir() / "metrics"


def build_app(args: dict[str, Any]) -> serve.Application:
    """Build the prune application from the `args` of a deploy/*.yaml file."""
    config = parse_config(args)
    folder = metrics_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    # Every replica writes its metrics into its node's subfolder; the node's exporter
    # (and the ingress's /metrics, for its own node) merge them (service.node_metrics).
    # Ray starts workers at nice 15, which on a small machine puts the engine behind
    # Ray's own housekeeping: replicas run at their deployment's niceness (default 0).
    def runtime_env(niceness: int) -> dict[str, Any]:
        env = {node_metrics.FOLDER_ENV: str(folder), node_metrics.PORT_ENV: str(config.metrics_port),
               "RAY_worker_niceness": str(niceness)}
        if config.metrics_token_env:  # the name only: the token stays in the node's environment
            env[node_metrics.TOKEN_ENV_ENV] = config.metrics_token_env
        return {"env_vars": env}

    def options(deployment_config) -> dict[str, Any]:
        opts = deployment_config.ray_options()
        opts["ray_actor_options"]["runtime_env"] = runtime_env(deployment_config.niceness)
        return opts

    scorer = (
        serve.deployment(ScorerServer, name="scorer")
        .options(**options(config.scorer), user_config=config.rewards().model_dump(mode="json"))
        .bind(config.scorer)
    )
    generator = (
        serve.deployment(GeneratorServer, name="generator")
        .options(**options(config.generator_deployment), health_check_period_s=10)
        .bind(config.generator, scorer)
    )
    # Small, and its state must be one: exactly one replica, never autoscaled.
    ledger = (
        serve.deployment(CallerLedger, name="callers")
        .options(num_replicas=1, max_ongoing_requests=1000, max_queued_requests=1000,
                 ray_actor_options={"num_cpus": 0, "runtime_env": runtime_env(0)})
        .bind(limits_of(config.callers))
    )
    ingress = serve.deployment(serve.ingress()(Ingress), name="ingress").options(**options(config.ingress))
    # What was given, not every default: the ingress re-validates it, and a default written
    # out (num_replicas beside autoscaling) would read as given.
    return ingress.bind(config.model_dump(mode="json", exclude_unset=True), generator, scorer, ledger)
