"""Every private API of prune's dependencies that prune uses, each behind one function.

Each has no public equivalent in the pinned versions; tests/unit/test_private_apis.py
checks each against the installed package, so an upgrade that moves one fails there,
by name, instead of in a running service.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def ban_token_sequences(params: Any, sequences: Sequence[Sequence[int]] | None) -> None:
    """vLLM: the token sequences its sampler must never produce (`bad_words_token_ids`, which
    the engine reads). Its own `bad_words` drops a word's after-a-space form in some
    tokenizations (service.generator.vllm.ban_sequences), so prune sets the list itself."""
    params._bad_words_token_ids = None if sequences is None else [list(s) for s in sequences]


def serve_deploy(schema: Any, http_options: dict) -> None:
    """Ray Serve: start Serve with these HTTP options and deploy a config declaratively, as
    `serve deploy` does (per-deployment overrides apply, a later `serve deploy` updates);
    `serve.run` takes one application object, not a config file's schema."""
    from ray.serve._private import api as serve_api

    client = serve_api.serve_start(http_options=http_options, proxy_location=schema.proxy_location)
    client.deploy_apps(schema, _blocking=False)


def kv_put(key: str, value: str, namespace: str) -> None:
    """Ray's cluster key-value store (the GCS): one value, overwritten."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=namespace)


def kv_items(namespace: str) -> dict[str, str]:
    """Every key and value of a namespace of Ray's cluster key-value store."""
    from ray.experimental import internal_kv

    items = {}
    for key in internal_kv._internal_kv_list("", namespace=namespace):
        value = internal_kv._internal_kv_get(key, namespace=namespace)
        if value is not None:
            items[key.decode()] = value.decode()
    return items


def use_multiprocess_values(created: Iterable[Any] = ()) -> None:
    """prometheus_client: metrics write their values to files in PROMETHEUS_MULTIPROC_DIR
    (its multiprocess mode) from now on. The library picks the value class once, at
    import, and a metric its values at creation; a replica learns its node's folder only
    when it starts, so the metrics `created` before then get file-backed values now
    (what they counted so far, nothing: nothing is served before a replica starts)."""
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue()
    for metric in created:
        children = list(metric._metrics.values()) if metric._labelnames else [metric]
        for child in children:
            child._metric_init()
