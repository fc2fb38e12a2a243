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


def test_placement_and_autoscaling_reach_ray_as_options_it_accepts():
    from ray import serve

    from service.deployments import GeneratorServer

    config = parse_config({"generator_deployment": {
        "num_gpus": 1, "resources": {"generator_node": 1}, "label_selector": {"pool": "gpu"},
        "accelerator_type": "H100",
        "autoscaling": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8, "upscale_delay_s": 5},
    }})
    options = config.generator_deployment.ray_options()
    assert "num_replicas" not in options
    assert options["autoscaling_config"]["max_replicas"] == 4 and options["autoscaling_config"]["upscale_delay_s"] == 5
    assert options["ray_actor_options"] == {"num_cpus": 0, "num_gpus": 1, "resources": {"generator_node": 1},
                                            "label_selector": {"pool": "gpu"}, "accelerator_type": "H100"}
    deployment = serve.deployment(GeneratorServer, name="generator").options(**options)  # Ray's own checks
    assert deployment._deployment_config.autoscaling_config.max_replicas == 4
    # One machine, nothing said: one replica, no placement constraints.
    assert parse_config({}).generator_deployment.ray_options()["ray_actor_options"] == {"num_cpus": 0, "num_gpus": 0}


@pytest.mark.parametrize("deployment, field", [
    ({"num_replicas": 2, "autoscaling": {"max_replicas": 3}}, "num_replicas or autoscaling"),
    ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas must not exceed"),
    ({"autoscaling": {"max_replicas": 2, "initial_replicas": 5}}, "initial_replicas"),
    ({"autoscaling": {"max_replicas": 2, "target": 1}}, "scorer.autoscaling.target"),
    ({"autoscaling": {"max_replicas": 2, "look_back_period_s": 2}}, "look_back_period_s (2.0) must exceed"),
])
def test_bad_autoscaling_is_refused_naming_the_field(deployment, field):
    with pytest.raises(ConfigError) as info:
        parse_config({"scorer": deployment})
    assert field in str(info.value)


@pytest.mark.parametrize("host, args, refused", [
    ("127.0.0.1", {}, False),
    ("localhost", {}, False),
    ("::1", {}, False),
    ("0.0.0.0", {}, True),
    ("10.1.2.3", {"api_keys": ["plaintext-in-a-file"]}, True),  # a key in the deploy file is not a secret
    ("0.0.0.0", {"callers": [{"name": "a", "key_env": "PRUNE_KEY"}]}, False),
    ("0.0.0.0", {"callers": [{"name": "a", "key_file": "/run/secrets/key"}]}, False),
    ("0.0.0.0", {"allow_anonymous": True}, False),
])
def test_listening_beyond_loopback_needs_keys_or_an_explicit_allow_anonymous(host, args, refused):
    from service.config import check_exposure

    config = parse_config({"generator": {"kind": "fake"}} | args)
    if not refused:
        check_exposure(host, config)
        return
    with pytest.raises(ConfigError) as info:
        check_exposure(host, config)
    assert "http_options.host" in str(info.value) and "allow_anonymous" in str(info.value)


def test_the_launcher_checks_the_host_it_listens_on(tmp_path, capsys):
    from service.serve import main

    assert main([str(DEPLOY / "local.yaml"), "--host", "0.0.0.0"]) == 2  # local.yaml names no callers
    assert "http_options.host '0.0.0.0' listens beyond loopback" in capsys.readouterr().err
    # A file that listens everywhere without keys: refused as it is (with --host 127.0.0.1 it would start).
    open_file = tmp_path / "open.yaml"
    open_file.write_text(yaml.safe_dump({"http_options": {"host": "0.0.0.0"}, "applications": [
        {"name": "prune", "import_path": "service.app:build_app", "args": {"generator": {"kind": "fake"}}}]}))
    assert main([str(open_file)]) == 2 and "listens beyond loopback" in capsys.readouterr().err
