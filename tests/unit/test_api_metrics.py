"""The HTTP API's Prometheus metrics: they move with what is served, and only prune's own."""

from tests.api_client import TEXTS, complete, metric


def test_metrics_move_with_the_requests_served(client):
    names = {
        "ok": ("prune_requests_total", {"endpoint": "/v1/completions", "status": "200"}),
        "bad": ("prune_requests_total", {"endpoint": "/v1/completions", "status": "400"}),
        "latency": ("prune_request_latency_seconds_count", {"endpoint": "/v1/completions"}),
        "generated": ("prune_candidates_generated_total", {}),
        "scored": ("prune_candidates_scored_total", {}),
        "tokens": ("prune_completion_tokens_total", {}),
        # Rewards may be negative, so their histograms have no _sum: the buckets tell the value.
        "chosen": ("prune_chosen_reward_count", {"reward_model": "fake"}),
        "chosen_le_10": ("prune_chosen_reward_bucket", {"reward_model": "fake", "le": "10.0"}),
        "chosen_le_100": ("prune_chosen_reward_bucket", {"reward_model": "fake", "le": "100.0"}),
        "candidate_rewards": ("prune_candidate_reward_count", {"reward_model": "fake"}),
        "margin": ("prune_reward_margin_sum", {"reward_model": "fake"}),
        "uplift": ("prune_reward_uplift_sum", {"reward_model": "fake"}),
        "best_of": ("prune_effective_best_of_sum", {}),
        "cutoffs": ("prune_budget_cutoffs_total", {}),
    }
    before = {key: metric(client, name, **labels) for key, (name, labels) in names.items()}
    complete(client, best_of=3)
    complete(client, best_of=0)
    delta = {key: metric(client, name, **labels) - before[key] for key, (name, labels) in names.items()}
    longest, first, median = len(TEXTS[1]), len(TEXTS[0]), len(TEXTS[2])
    assert longest == 34
    assert delta == {
        "ok": 1, "bad": 1, "latency": 2, "generated": 3, "scored": 3,
        "tokens": sum(len(t.split()) for t in TEXTS), "candidate_rewards": 3,
        "chosen": 1, "chosen_le_10": 0, "chosen_le_100": 1,  # the chosen reward: 34
        "margin": longest - median, "uplift": longest - first, "best_of": 3, "cutoffs": 0,
    }


def test_metrics_show_only_prunes_own_families(client):
    from prometheus_client import Counter

    Counter("vllm_like_metric", "a library's own metric").inc()
    text = client.get("/metrics").text
    assert "vllm_like_metric" not in text and "prune_requests_total" in text
