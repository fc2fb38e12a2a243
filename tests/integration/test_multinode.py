"""prune on a local Ray cluster of four nodes (`pytest -k multinode`).

loadtests.local_cluster starts Ray's own `ray.cluster_utils.Cluster` on this
machine, a head and three worker nodes (gen-a, gen-b, scorer), each a raylet with
its own custom resources, all on 127.0.0.1, and deploys deploy/cluster.yaml: the
fake generator (autoscaled 1-3) and the real slop reward, placed only by that
file's `resources`. The cluster is shared by the tests of this module, which run
in order: placement, metrics from every node, autoscaling under load, a node
killed under load. Figures are printed (pytest -s) for the closing notes.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from loadtests.local_cluster import LOOPBACK_ENV, LocalCluster, read_config
from tests.metrics_text import sample
from tests.service_process import ROOT, free_port

pytestmark = pytest.mark.multinode

BUDGET_S = 2.0  # deploy/cluster.yaml's latency_budget_ms_default


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray._private import ray_constants

    env = pytest.MonkeyPatch()
    for name, value in LOOPBACK_ENV.items():
        env.setenv(name, value)  # for the raylets and replicas
    env.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # for this process, which imported ray already
    config = read_config(ROOT / "deploy" / "cluster.yaml", str(tmp_path_factory.mktemp("multinode") / "metrics"))
    local = LocalCluster(config, free_port())
    print(f"\n4-node cluster and prune deployed in {local.ready_s:.1f} s")
    local.texts = config["applications"][0]["args"]["generator"]["texts"]
    try:
        yield local
    finally:
        local.shutdown()
        env.undo()


def complete(url: str, timeout_s: float = 30) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json={"model": "fake-model", "prompt": "Hi"}, timeout=timeout_s)


class Load:
    """Clients sending completions back to back until stopped (at most `max_s`, `max_requests`)."""

    def __init__(self, url: str, clients: int, max_s: float = 90, max_requests: int = 2000):
        self.url, self.stop_at, self.left = url, time.monotonic() + max_s, max_requests
        self.answers: list[tuple[float, float, int]] = []  # (sent, answered, status), monotonic
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(clients)
        self.futures = [self.pool.submit(self.client) for _ in range(clients)]

    def client(self):
        while not self.stopped.is_set() and time.monotonic() < self.stop_at:
            with self.lock:
                if self.left == 0:
                    return
                self.left -= 1
            sent = time.monotonic()
            try:
                status = complete(self.url, timeout_s=20).status_code
            except httpx.HTTPError:
                status = 0
            self.answers.append((sent, time.monotonic(), status))
            if status != 200:
                time.sleep(0.2)  # a refusal asks to back off

    def stop(self) -> list[tuple[float, float, int]]:
        self.stopped.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()
        return sorted(self.answers)


def wait_until(predicate, timeout_s: float, every_s: float = 0.25) -> float | None:
    """Seconds until `predicate()` held, or None if it never did within `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(every_s)
    return None


def test_multinode_requests_are_answered_with_each_part_on_the_node_its_config_names(cluster):
    answers = [complete(cluster.url) for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 4, answers[0].text
    # The scorer on its node chose what the same reward chooses here.
    assert {r.json()["choices"][0]["text"] for r in answers} == {slop_choice(cluster.texts)}
    placement = {name: cluster.replicas(name) for name in ("ingress", "generator", "scorer")}
    print(f"placement: {placement}")
    assert placement["ingress"] == ["head"]
    assert placement["scorer"] == ["scorer"]
    assert placement["generator"] and set(placement["generator"]) <= {"gen-a", "gen-b"}


def slop_choice(texts: list[str]) -> str:
    import asyncio

    from service.config import SlopRewardConfig
    from service.reward import make_reward_model
    from service.types import Prompt

    scores = asyncio.run(make_reward_model(SlopRewardConfig()).score(Prompt(text="Hi", max_tokens=64), texts))
    return texts[max(range(len(texts)), key=lambda i: scores.values[i])]


def scrape_every_node(cluster) -> dict[str, str]:
    """Node name -> that node's exporter's metrics text, found as Prometheus finds them."""
    groups = httpx.get(f"{cluster.url}/metrics/targets", timeout=10).json()
    return {cluster.node_name(g["labels"]["ray_node_id"]): httpx.get(f"http://{g['targets'][0]}/metrics",
                                                                     timeout=10).text for g in groups}


def test_multinode_metrics_of_every_node_are_served_by_its_exporter_and_counted_once(cluster):
    before = scrape_every_node(cluster)
    sent = 6
    assert [complete(cluster.url).status_code for _ in range(sent)] == [200] * sent
    after = scrape_every_node(cluster)
    print(f"exporters: {sorted(after)}")
    assert {"head", "scorer"} <= set(after) and set(after) & {"gen-a", "gen-b"}

    def delta(node: str, name: str, **labels) -> float:
        return sample(after.get(node, ""), name, **labels) - sample(before.get(node, ""), name, **labels)

    def per_node(name: str, **labels) -> dict[str, float]:
        return {node: delta(node, name, **labels) for node in after}

    requests = per_node("prune_requests_total", endpoint="/v1/completions", status="200")
    aborted = per_node("prune_candidates_aborted_total")
    scored = per_node("prune_scorer_batch_size_sum")
    print(f"per node: requests {requests}, generator aborts {aborted}, scorer candidates {scored}")
    # Each counted where it happened, once: the ingress's on the head, the generator's on
    # its node, the scorer's on the scorer node; summed across nodes, exactly what was sent.
    assert sum(requests.values()) == requests["head"] == sent
    gen_nodes = set(cluster.replicas("generator"))
    assert sum(aborted.values()) == sum(aborted[n] for n in gen_nodes) == sent  # candidate 3 of each request
    assert sum(scored.values()) == scored["scorer"] == 3 * sent  # the three that finished
    # The ingress's own /metrics covers its node only.
    assert sample(httpx.get(f"{cluster.url}/metrics").text, "prune_scorer_batch_size_sum") == 0


def test_multinode_generator_scales_up_under_load_and_back_down_after(cluster):
    assert wait_until(lambda: cluster.running_replicas("generator") == 1, 60) is not None
    load = Load(cluster.url, clients=6, max_s=60)
    up_s = wait_until(lambda: cluster.running_replicas("generator") >= 2, 45)
    peak = cluster.running_replicas("generator")
    where = cluster.replicas("generator")
    answers = load.stop()
    down_s = wait_until(lambda: cluster.running_replicas("generator") == 1, 60)
    codes = [status for _, _, status in answers]
    print(f"autoscaling: up to {peak} replicas ({where}) {up_s} s into the load; back to 1 {down_s} s after "
          f"it stopped; {len(codes)} requests, statuses {sorted(set(codes))}")
    assert up_s is not None and down_s is not None
    assert set(where) <= {"gen-a", "gen-b"}
    assert codes.count(200) == len(codes)


def test_multinode_a_dead_worker_nodes_replicas_come_back_on_a_surviving_node(cluster):
    # Scaled back down: one replica running, and the stopped ones' processes gone.
    assert wait_until(lambda: cluster.running_replicas("generator") == len(cluster.replicas("generator")) == 1,
                      60) is not None
    [doomed] = cluster.replicas("generator")
    survivor = {"gen-a": "gen-b", "gen-b": "gen-a"}[doomed]
    load = Load(cluster.url, clients=2, max_s=90)
    time.sleep(3)
    killed_at = time.monotonic()
    doomed_id = cluster.nodes[doomed].node_id
    cluster.kill(doomed)

    # Replaced: the dead node's replica gone, one (or two: the load may scale it up) on the survivor.
    replaced_s = wait_until(lambda: set(cluster.replicas("generator")) == {survivor}, 60)
    replaced_at = time.monotonic()

    def answered_after_replacement() -> bool:  # not an answer the dying replica still sent
        return any(sent > replaced_at and status == 200 for sent, _, status in list(load.answers))

    recovered_s = wait_until(answered_after_replacement, 60)
    time.sleep(2)
    answers = load.stop()
    after = [(status, round(answered - killed_at, 1)) for sent, answered, status in answers if answered > killed_at]
    print(f"node {doomed} killed under load: replaced on {survivor} after {replaced_s} s, answering "
          f"{recovered_s} s later; answers after the kill (status, s): {after[:12]}...")
    assert replaced_s is not None and recovered_s is not None
    # While the replica is replaced: 503s (Retry-After) once the ingress's probe knows, 504s at
    # the budget for the calls sent before it knew; never a 500, never an answer past the budget.
    assert {status for status, _ in after} <= {200, 503, 504}
    assert max(answered - sent for sent, answered, _ in answers) < BUDGET_S + 1.0
    assert after[-1][0] == 200
    exporters = httpx.get(f"{cluster.url}/metrics/targets", timeout=10).json()
    assert doomed_id not in {g["labels"]["ray_node_id"] for g in exporters}
