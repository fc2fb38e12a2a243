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
