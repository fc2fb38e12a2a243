"""The YAML config: shipped files validate, bad values stop the start naming the field."""

from pathlib import Path

import pytest
import yaml

from service.config import ConfigError, FakeGeneratorConfig, VLLMGeneratorConfig, load_serve_file, parse_config

DEPLOY = Path(__file__).parents[2] / "deploy"


@pytest.mark.parametrize("name", sorted(p.name for p in DEPLOY.glob("*.yaml")))
def test_every_shipped_config_validates(name):
    _, config = load_serve_file(DEPLOY / name)
    assert config.default_reward_model in config.reward_models


def test_local_config_serves_the_embedded_model_on_cpu():
    serve_file, config = load_serve_file(DEPLOY / "local.yaml")
    assert isinstance(config.generator, VLLMGeneratorConfig)
    assert config.generator.model == "embedded:smollm2-135m-instruct"
    assert config.generator.dtype == "float32"
    assert serve_file.http_options["port"] == 8000


def test_generator_kind_selects_the_implementation():
    assert isinstance(parse_config({"generator": {"kind": "fake"}}).generator, FakeGeneratorConfig)


@pytest.mark.parametrize(
    "args, field",
    [
        ({"limits": {"best_of_max": 0}}, "limits.best_of_max"),
        ({"limits": {"best_of_default": 8, "best_of_max": 4}}, "best_of_default"),
        ({"generator": {"kind": "tpu"}}, "generator"),
        ({"generator": {"kind": "vllm", "dtyp": "float32"}}, "generator.vllm.dtyp"),
        ({"default_reward_model": "nope"}, "default_reward_model"),
        ({"reward_models": {"x": {"kind": "slop", "weight": 2}}}, "reward_models.x.slop.weight"),
        ({"scorer": {"max_batch_size": 0}}, "scorer.max_batch_size"),
        ({"fallback_reward": {"kind": "ensemble", "members": [{"name": "slop"}]}}, "fallback_reward"),
        ({"fallback_reward": {"kind": "slop", "wieght": 1}}, "fallback_reward.slop.wieght"),
        ({"streaming": {"commit": "eager"}}, "streaming.commit"),
        ({"streaming": {"commit_tokens": 0}}, "streaming.commit_tokens"),
        ({"partial_offsets": {"nope": {"tokens": [4], "offsets": [-1.0]}}}, "partial_offsets: nope"),
        ({"partial_offsets": {"slop": {"tokens": [4, 8], "offsets": [-1.0]}}}, "partial_offsets.slop"),
        ({"partial_offsets": {"slop": {"tokens": [8, 4], "offsets": [-1.0, 0.0]}}}, "partial_offsets.slop.tokens"),
    ],
)
def test_bad_values_name_the_field(args, field):
    with pytest.raises(ConfigError) as info:
        parse_config(args)
    assert field in str(info.value)


def test_a_file_without_the_prune_application_is_rejected(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({"applications": [{"import_path": "other:app"}]}))
    with pytest.raises(ConfigError, match="service.app:build_app"):
        load_serve_file(path)
