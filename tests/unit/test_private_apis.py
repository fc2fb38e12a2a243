"""Each private API prune uses (service/private_apis.py) still does what prune relies on in
the installed dependency: an upgrade that moves one fails here, by name."""

import inspect

from service import private_apis


def test_vllm_reads_the_banned_sequences_prune_sets():
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=4)
    private_apis.ban_token_sequences(params, ((5, 6), (7,)))
    assert params.bad_words_token_ids == [[5, 6], [7]]  # the property vLLM's sampler reads


def test_ray_serve_still_starts_and_deploys_a_config_as_serve_deploy_does():
    from ray.serve._private import api as serve_api
    from ray.serve._private.client import ServeControllerClient

    assert {"http_options", "proxy_location"} <= set(inspect.signature(serve_api.serve_start).parameters)
    assert {"config", "_blocking"} <= set(inspect.signature(ServeControllerClient.deploy_apps).parameters)


def test_rays_key_value_store_keeps_a_namespace_of_values():
    from ray.experimental import internal_kv

    for name, wanted in [("_internal_kv_put", {"key", "value", "overwrite", "namespace"}),
                         ("_internal_kv_get", {"key", "namespace"}),
                         ("_internal_kv_list", {"prefix", "namespace"})]:
        assert wanted <= set(inspect.signature(getattr(internal_kv, name)).parameters), name


def test_prometheus_metrics_created_after_the_switch_write_to_the_folder(tmp_path, monkeypatch):
    from prometheus_client import CollectorRegistry, Counter, values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    private_apis.use_multiprocess_values()
    Counter("prune_private_api_check", "a counter of this test", registry=CollectorRegistry()).inc()
    assert list(tmp_path.glob("counter_*.db")), "the counter's value did not go to the folder"
