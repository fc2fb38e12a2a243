"""The HTTP API over the fake generator and reward, without Ray, as the unit tests drive it."""

from fastapi.testclient import TestClient

from service.api import create_api
from service.config import FakeRewardConfig, parse_config
from service.generator.fake import FakeGenerator
from service.reward.catalog import StaticCatalog
from service.reward.fake import FakeReward
from service.reward.slop import SlopReward
from service.serving import Reranker
from tests.metrics_text import sample

TEXTS = ["A short one.", "The longest candidate of them all.", "A medium candidate."]


def make_client(texts=TEXTS, metrics_targets=None, **overrides):
    args = {
        "generator": {"kind": "fake", "texts": texts, "served_model_name": "fake-model"},
        "reward_models": {"fake": {"kind": "fake"}, "slop": {"kind": "slop"}},
        "default_reward_model": "fake",
        "limits": {"best_of_default": 3, "best_of_max": 8, "max_tokens_max": 100,
                   "latency_budget_ms_default": 5000, "latency_budget_ms_max": 10000,
                   "max_body_bytes": 2048},
    }
    for key, value in overrides.items():
        args[key] = value if not isinstance(value, dict) else {**args.get(key, {}), **value}
    config = parse_config(args)
    rewards = {"fake": FakeReward(FakeRewardConfig()), "slop": SlopReward()}
    catalog = StaticCatalog(rewards, config.default_reward_model)
    generator = FakeGenerator(config.generator, judge=catalog)
    reranker = Reranker(config, generator, catalog)
    client = TestClient(create_api(reranker, metrics_targets=metrics_targets), raise_server_exceptions=False)
    client.generator, client.rewards, client.reranker = generator, rewards, reranker
    return client


def metric(client, name, **labels):
    return sample(client.get("/metrics").text, name, **labels)


def complete(client, **body):
    return client.post("/v1/completions", json={"model": "fake-model", "prompt": "Say something.", **body})
