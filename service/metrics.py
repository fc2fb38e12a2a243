"""Every Prometheus metric of the service, in one place.

Replicas are separate processes. Each replica calls `bind_to_node()` as it starts:
with PRUNE_METRICS_DIR set (the app builder sets it for every replica),
prometheus_client then writes values to files in a folder of the replica's Ray
node and `render()` merges all of them, so GET /metrics on the ingress covers the
whole application on its node; on a cluster each node's
exporter serves its own (service.node_metrics). Label values are never
user-controlled: endpoints are route templates, statuses are numbers, reward
model names are validated against the config before use.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from service import node_metrics

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
REWARD_BUCKETS = (-20, -10, -5, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 5, 10, 100, 1000)

REQUESTS = Counter("prune_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"])
REQUEST_LATENCY = Histogram(
    "prune_request_latency_seconds", "End-to-end request latency.", ["endpoint"], buckets=LATENCY_BUCKETS
)
GENERATE_LATENCY = Histogram(
    "prune_generate_latency_seconds", "Time sampling the candidates of a request.", buckets=LATENCY_BUCKETS
)
SCORE_LATENCY = Histogram(
    "prune_score_latency_seconds", "Time scoring the candidates of a request.", buckets=LATENCY_BUCKETS
)
CANDIDATES_GENERATED = Counter("prune_candidates_generated", "Candidates sampled (finished or cut short).")
CANDIDATES_SCORED = Counter("prune_candidates_scored", "Candidates scored by a reward model.")
COMPLETION_TOKENS = Counter("prune_completion_tokens", "Tokens generated across all candidates.")
CHOSEN_REWARD = Histogram(
    "prune_chosen_reward", "Reward of the returned candidate.", ["reward_model"], buckets=REWARD_BUCKETS
)
CANDIDATES_ABORTED = Counter(
    "prune_candidates_aborted", "Candidates aborted in the engine at the deadline or because the client went away."
)
CANDIDATE_REWARD = Histogram(
    "prune_candidate_reward", "Reward of every scored candidate.", ["reward_model"], buckets=REWARD_BUCKETS
)
REWARD_MARGIN = Histogram(
    "prune_reward_margin", "Chosen reward minus the median candidate's: how much choosing mattered.",
    ["reward_model"], buckets=(0, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 100),
)
REWARD_UPLIFT = Histogram(
    "prune_reward_uplift", "Chosen reward minus the first candidate's: the gain over plain sampling.",
    ["reward_model"], buckets=(0, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 100),
)
BEST_OF = Histogram(
    "prune_effective_best_of", "Candidates sampled per request (after adaptive reduction).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
ADAPTIVE_REDUCTIONS = Counter(
    "prune_adaptive_reductions", "Requests given fewer candidates than asked (the generator saturated, or admission "
    "fitting the request into its deadline); each counted once."
)
SCORER_BATCH_SIZE = Histogram(
    "prune_scorer_batch_size", "Completions per reward call of the scorer deployment (across requests).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
CANDIDATES_PRUNED = Counter(
    "prune_candidates_pruned", "Candidates aborted at a pruning checkpoint for scoring low on their partial text."
)
CANDIDATES_BRANCHED = Counter(
    "prune_candidates_branched", "Candidates started from a leader's text so far (the branch rule)."
)
ADAPTIVE_N = Counter(
    "prune_adaptive_n_candidates", "Adaptive N: candidates of best_of past the first wave, by what became of them: "
    "drawn (the first wave's rewards spread) or unsampled (they agreed).", ["outcome"],
)
QUEUE_WAIT = Histogram(
    "prune_queue_wait_seconds", "Time a candidate waited in the engine's queue before it was first scheduled.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
BUDGET_EXHAUSTED = Counter("prune_budget_exhausted", "Requests answered 504: no text within the budget.")
BUDGET_CUTOFFS = Counter("prune_budget_cutoffs", "Requests whose latency budget cut candidates short.")
REFUSED = Counter(
    "prune_refused", "Requests refused before any work, with Retry-After; reason: capacity (503), "
    "caller_concurrency or caller_tokens (429).", ["reason"]
)
DEGRADED = Counter(
    "prune_degraded", "Requests scored by the fallback reward; reason: scorer_unavailable or scorer_slow.", ["reason"]
)
STREAM_FIRST_TEXT = Histogram(
    "prune_stream_first_text_seconds", "Streams: from arrival to the first text sent; commit: leader (committed "
    "early), select (after selection) or single (nothing to choose: from the first token).", ["commit"],
    buckets=LATENCY_BUCKETS,
)
STREAM_COMMIT_TOKENS = Histogram(
    "prune_stream_commit_tokens", "Streams that committed early: tokens each candidate had at the commit point "
    "(0: nothing to choose).", buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
)
STREAM_COMMIT_SECONDS = Histogram(
    "prune_stream_commit_seconds", "Streams that committed early: from arrival to the commit.", buckets=LATENCY_BUCKETS
)


def bind_to_node() -> str | None:
    """In a Ray replica, before it serves: this process's metrics (those created already
    and those to come) write to its node's folder; returns the folder (None outside Ray)."""
    created = [m for m in globals().values() if isinstance(m, (Counter, Histogram))]
    return node_metrics.bind_node_folder(created)


class _OnlyOurs:
    """prune's metric families only: libraries in the same processes (vLLM) write
    their own metrics into the shared folder too."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        return [family for family in self.source.collect() if family.name.startswith("prune_")]


def node_registry() -> CollectorRegistry:
    """prune's metrics of every process on this node (or of this process alone)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)
    else:
        source = REGISTRY
    registry = CollectorRegistry()
    registry.register(_OnlyOurs(source))
    return registry


def render() -> tuple[bytes, str]:
    """The metrics text of every process on this node (or of this process alone)."""
    return generate_latest(node_registry()), CONTENT_TYPE_LATEST
