"""The files in deploy/ that no test deploys here: the KubeRay manifests, the
Prometheus config and the Grafana dashboard stay true to the code and to each other."""

import json
import re
from pathlib import Path

import pytest
import yaml

from service import metrics
from service.config import ServiceConfig, load_serve_file

DEPLOY = Path(__file__).parents[2] / "deploy"


def read_yaml(name: str):
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def rayservice():
    return read_yaml("kuberay/rayservice.yaml")


def pod_templates(rayservice) -> list[dict]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]


def test_the_rayservice_serves_exactly_deploy_gpu_yaml(rayservice, tmp_path):
    served = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    assert served == read_yaml("gpu.yaml"), "deploy/kuberay/rayservice.yaml's serveConfigV2 drifted from deploy/gpu.yaml"
    path = tmp_path / "served.yaml"
    path.write_text(rayservice["spec"]["serveConfigV2"])
    load_serve_file(path)  # and prune accepts it


def test_the_rayservice_has_the_fields_kuberay_requires(rayservice):
    assert (rayservice["apiVersion"], rayservice["kind"]) == ("ray.io/v1", "RayService")
    cluster = rayservice["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"  # the pinned ray[serve]
    for template in pod_templates(rayservice):
        assert template["spec"]["containers"] and all(c["name"] and c["image"] for c in template["spec"]["containers"])
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    [gpu] = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The model folder gpu.yaml names comes from a mounted volume.
    model = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"][0]["args"]["generator"]["model"]
    assert any(model.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])


def test_the_rayservice_reads_every_callers_key_from_a_secret_where_the_ingress_runs(rayservice):
    _, config = load_serve_file(DEPLOY / "gpu.yaml")
    key_envs = {c.key_env for c in config.callers}
    assert key_envs and None not in key_envs  # it listens on 0.0.0.0: keys required, none in plaintext
    cluster = rayservice["spec"]["rayClusterConfig"]
    for group in cluster["workerGroupSpecs"]:  # the head runs no replicas (num-cpus 0)
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        for name in key_envs:
            assert "secretKeyRef" in env[name]["valueFrom"], (group["groupName"], name)


def test_the_serve_config_autoscales_within_the_worker_groups_range(rayservice):
    _, config = load_serve_file(DEPLOY / "gpu.yaml")
    [gpu] = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert rayservice["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    gpus, cpus = gpu["maxReplicas"] * int(limits["nvidia.com/gpu"]), gpu["maxReplicas"] * int(limits["cpu"])
    parts = [config.ingress, config.generator_deployment, config.scorer]
    assert all(part.autoscaling is not None for part in parts)  # each part grows with its load
    generator = config.generator_deployment
    assert generator.autoscaling.min_replicas * generator.num_gpus <= gpu["minReplicas"] * int(limits["nvidia.com/gpu"])
    assert generator.autoscaling.max_replicas * generator.num_gpus == gpus  # grows to every GPU the group may add
    # At the most replicas of every part, the CPUs they ask for fit the group at its largest.
    assert sum(part.autoscaling.max_replicas * part.num_cpus for part in parts) <= cpus


def test_the_pod_monitor_sends_the_token_the_exporters_require(rayservice):
    _, config = load_serve_file(DEPLOY / "gpu.yaml")
    assert config.metrics_token_env
    [endpoint] = read_yaml("kuberay/podmonitor.yaml")["spec"]["podMetricsEndpoints"]
    assert endpoint["authorization"]["type"] == "Bearer"
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env[config.metrics_token_env]["valueFrom"]["secretKeyRef"] == endpoint["authorization"]["credentials"]


def test_probes_and_the_pod_monitor_point_at_prunes_endpoints(rayservice):
    api_paths = {"/healthz", "/readyz"}  # service/api.py: liveness and readiness
    gpu_worker = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert gpu_worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {gpu_worker[p]["httpGet"]["path"] for p in ("livenessProbe", "startupProbe")} == {"/healthz"}
    assert {gpu_worker[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")} <= api_paths
    monitor = read_yaml("kuberay/podmonitor.yaml")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    selected = monitor["spec"]["selector"]["matchLabels"]
    for template in pod_templates(rayservice):
        assert selected.items() <= template["metadata"]["labels"].items()  # every pod is scraped
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert ports[endpoint["port"]] == ServiceConfig().metrics_port  # gpu.yaml keeps the default port


def test_prometheus_discovers_the_nodes_through_the_ingress():
    from urllib.parse import urlsplit

    from tests.api_client import make_client

    [job] = read_yaml("prometheus/prometheus.yml")["scrape_configs"]
    [sd] = job["http_sd_configs"]
    url = urlsplit(sd["url"])
    serve_file, _ = load_serve_file(DEPLOY / "local.yaml")
    assert (url.hostname, url.port) == (serve_file.http_options["host"], serve_file.http_options["port"])
    # What the ingress answers at that path is Prometheus's HTTP discovery format: the live
    # exporters, each scraped at /metrics (Prometheus's default path: the job sets none).
    nodes = [{"targets": ["10.0.0.7:9101"], "labels": {"ray_node_id": "a1"}},
             {"targets": ["10.0.0.8:9101"], "labels": {"ray_node_id": "b2"}}]

    async def live_exporters():
        return nodes

    assert make_client(metrics_targets=live_exporters).get(url.path).json() == nodes
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_every_metric_on_the_grafana_dashboard_exists():
    dashboard = json.loads((DEPLOY / "grafana" / "prune-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name) for e in exprs for name in re.findall(r"prune_\w+", e)}
    defined = {family.name for family in metrics.node_registry().collect()}
    defined |= {m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")}
    assert used and used <= defined, used - defined
    # The panels the operators asked for: goodput, latency, best_of, pruning, reward, margin, uplift.
    for name in ("prune_requests", "prune_request_latency_seconds", "prune_effective_best_of",
                 "prune_candidates_pruned", "prune_chosen_reward", "prune_reward_margin", "prune_reward_uplift"):
        assert name in used


def test_the_cluster_example_is_a_valid_config():
    serve_file, config = load_serve_file(DEPLOY / "cluster.yaml")
    assert config.generator_deployment.autoscaling.max_replicas == 3
    assert config.scorer.resources == {"scorer": 0.1}
