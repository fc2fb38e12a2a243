"""Each Ray Serve deployment's options: replicas or autoscaling, placement, queues, niceness."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from service.config.base import Strict


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
    backpressure_retry_after_s: int = Field(
        1, ge=1, description="Retry-After of Ray's refusals when the queue is full."
    )
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
