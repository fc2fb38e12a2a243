"""A replica's metrics go to its node's folder from when it starts (metrics.bind_to_node),
not from import: importing service.metrics has no side effect."""

import os
import subprocess
import sys
from pathlib import Path

from tests.metrics_text import sample

REPLICA = """
import os, sys
from service import metrics

assert not os.listdir(sys.argv[1]), "importing service.metrics wrote something"
metrics.CANDIDATES_GENERATED.inc(3)  # before the replica started: not served, dropped
metrics.REFUSED.labels("capacity").inc(5)  # a labelled one too
folder = metrics.bind_to_node()
metrics.CANDIDATES_GENERATED.inc(2)
metrics.REFUSED.labels("capacity").inc()
print(folder)
print(metrics.render()[0].decode())
"""


def test_a_replica_binds_its_metrics_to_its_node_folder_when_it_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {"PRUNE_METRICS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", REPLICA, str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).parents[2], timeout=120)
    assert done.returncode == 0, done.stderr
    folder, text = done.stdout.split("\n", 1)
    assert folder == str(tmp_path / "node-local")  # outside Ray: the local node's folder
    assert sample(text, "prune_candidates_generated_total") == 2
    assert sample(text, "prune_refused_total", reason="capacity") == 1
    assert list(Path(folder).glob("counter_*.db"))  # in files, where the node's exporter merges every process


def test_an_exporter_with_a_token_answers_only_prometheus_with_it():
    import httpx
    from prometheus_client import CollectorRegistry, Counter

    from service.node_metrics import _start_exporter, exporter_app

    registry = CollectorRegistry()
    Counter("prune_exporter_check", "a counter of this test", registry=registry).inc(4)
    guarded = _start_exporter(exporter_app(registry, "s3cret"), "127.0.0.1", 0)
    open_one = _start_exporter(exporter_app(registry, None), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{guarded.server_port}/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        scraped = httpx.get(url, headers={"Authorization": "Bearer s3cret"})
        assert scraped.status_code == 200 and sample(scraped.text, "prune_exporter_check_total") == 4
        assert sample(httpx.get(f"http://127.0.0.1:{open_one.server_port}/metrics").text,
                      "prune_exporter_check_total") == 4  # no token configured: open, as before
    finally:
        guarded.shutdown()
        open_one.shutdown()
