"""A Ray cluster of four nodes on this machine, with prune deployed on it.

    python -m loadtests.local_cluster                      # deploy/cluster.yaml on http://127.0.0.1:8000
    python -m loadtests.local_cluster --config F --port P

Ray's own `ray.cluster_utils.Cluster` starts a head and three worker nodes, each a
raylet of its own with its own custom resources, all on 127.0.0.1:

    head     {ingress: 1}     the ingress, Serve's controller and HTTP proxy
    gen-a    {generator: 1}   generator replicas
    gen-b    {generator: 1}   generator replicas: where they go when gen-a dies
    scorer   {scorer: 1}      the scorer

The config places the deployments by those resources (deploy/cluster.yaml).
tests/integration/test_multinode.py runs on it; Ctrl-C stops everything here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

NODES = {"gen-a": {"generator": 1}, "scorer": {"scorer": 1}, "gen-b": {"generator": 1}}
# Ray notices a dead node after health_check_failure_threshold missed checks of
# health_check_period_ms each (defaults: 5 x 3 s); shortened so a kill shows within seconds.
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
LOOPBACK_ENV = {
    # Every node, the driver and the replicas on 127.0.0.1: Ray otherwise swaps loopback for
    # the machine's address, and this cluster's traffic stays on this machine's loopback.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Replicas and handles report their load every 0.5 s (default 10): autoscaling within seconds.
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class LocalCluster:
    """Call with LOOPBACK_ENV in os.environ (and ray_constants.ENABLE_RAY_CLUSTER false, if
    this process imported ray before setting it): the raylets and replicas inherit it."""

    def __init__(self, config: dict, port: int):
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        from service.config import ServeFile
        from service.serve import deploy

        started = time.monotonic()
        node = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
        self.cluster = Cluster(initialize_head=True, head_node_args=node | {
            "num_cpus": 2, "resources": {"ingress": 1}, "include_dashboard": False,
            "_system_config": FAST_FAILURE_DETECTION})
        self.nodes = {"head": self.cluster.head_node}
        for name, resources in NODES.items():
            self.nodes[name] = self.cluster.add_node(**node, resources=resources)
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address, logging_level="WARNING")
        self.url = f"http://127.0.0.1:{port}"
        deploy(ServeFile.model_validate(config), {"host": "127.0.0.1", "port": port})
        self.serve = serve
        self.ready_s = time.monotonic() - started

    def node_name(self, node_id: str) -> str:
        """The node's name; "removed" for one killed already (Ray may still list its actors a while)."""
        return next((name for name, node in self.nodes.items() if node.node_id == node_id), "removed")

    def replicas(self, deployment: str, app: str = "prune") -> list[str]:
        """The node (by name) of each live replica of a deployment."""
        actors = self.cluster.global_state.actor_table(None, actor_state_name="ALIVE").values()
        return sorted(self.node_name(a["Address"]["NodeID"]) for a in actors
                      if a["ActorClassName"] == f"ServeReplica:{app}:{deployment}")

    def running_replicas(self, deployment: str, app: str = "prune") -> int:
        status = self.serve.status().applications[app].deployments[deployment]
        return status.replica_states.get("RUNNING", 0)

    def kill(self, node: str) -> None:
        """SIGKILL a worker node's raylet and every process on it."""
        self.cluster.remove_node(self.nodes.pop(node), allow_graceful=False)

    def shutdown(self) -> None:
        import ray
        from ray._private.utils import get_ray_address_file

        self.serve.shutdown()
        ray.shutdown()
        address = self.cluster.address
        self.cluster.shutdown()
        # Cluster() wrote its address where a later ray.init() without one would look for
        # a cluster to join: leave no pointer to a cluster that is gone.
        marker = Path(get_ray_address_file(None))
        if marker.exists() and marker.read_text().strip() == address:
            marker.unlink()


def read_config(path: str | Path, metrics_dir: str) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    for app in config["applications"]:
        app["args"]["metrics_dir"] = metrics_dir  # fresh counters for each cluster
    return config


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="deploy/cluster.yaml")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    os.environ.update(LOOPBACK_ENV)
    config = read_config(args.config, tempfile.mkdtemp(prefix="prune-cluster-metrics-"))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background, where SIGINT is ignored
    local = LocalCluster(config, args.port)
    try:
        print(f"4 Ray nodes, prune ready in {local.ready_s:.1f} s on {local.url} "
              f"(metrics exporters: {local.url}/metrics/targets); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        local.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
