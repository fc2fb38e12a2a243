"""The Ray Serve application with the fake generator and reward, over real HTTP.

Starts the service once for this module through the real launcher, with two
ingress replicas so that metrics must be merged across processes.
"""

import json
import time

import httpx
import pytest
import yaml

from tests.metrics_text import sample
from tests.service_process import ServiceProcess

TEXTS = ["A short one.", "The longest candidate of them all.", "A medium candidate."]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    config = {
        "applications": [
            {
                "name": "prune",
                "route_prefix": "/",
                "import_path": "service.app:build_app",
                "args": {
                    "generator": {"kind": "fake", "texts": TEXTS, "served_model_name": "fake-model",
                                  "seconds_per_token": 0.1, "max_model_len": 100,
                                  "candidate_delays_s": [0, 0, 0, 5]},
                    "limits": {"best_of_default": 3},
                    "reward_models": {"fake": {"kind": "fake"}, "slop": {"kind": "slop"}},
                    "default_reward_model": "fake",
                    "ingress": {"num_replicas": 2},
                    "metrics_dir": str(tmp / "metrics"),
                },
            }
        ]
    }
    path = tmp / "fake.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = ServiceProcess(path, tmp / "service.log", ready_timeout_s=180)
    yield proc
    code, strays = proc.stop()
    assert code == 0, proc.tail()
    assert strays == [], "processes left behind after Ctrl-C"


def post(service, path, body):
    return httpx.post(f"{service.url}{path}", json=body, timeout=30)


def test_completion_through_ray_serve(service):
    r = post(service, "/v1/completions", {"model": "fake-model", "prompt": "Hi", "best_of": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["text"] == TEXTS[1]
    assert body["reranking"]["candidates_scored"] == 3


def test_pruning_through_ray_serve_judges_with_the_scorer_deployment(service):
    # At the 1-token checkpoint the starts are "A", "The", "A"; the fake reward is
    # length, so one of the "A"s goes (ties: the later), 0.2 s before it would finish.
    body = {"model": "fake-model", "prompt": "Hi", "best_of": 3, "latency_budget_ms": 5000,
            "pruning": {"checkpoints": [1], "fraction": 0.5}, "return_candidates": True}
    rr = post(service, "/v1/completions", body).json()["reranking"]
    assert rr["candidates_pruned"] == 1
    assert [c["text"] for c in rr["candidates"]] == TEXTS[:2]


def test_chat_streaming_through_ray_serve(service):
    r = post(service, "/v1/chat/completions",
             {"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}], "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == TEXTS[1]
    assert r.text.rstrip().endswith("data: [DONE]")


def test_errors_raised_in_the_generator_replica_keep_their_envelope(service):
    r = post(service, "/v1/completions", {"model": "fake-model", "prompt": "word " * 120, "max_tokens": 8})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "max_tokens"


def test_unknown_reward_model_is_a_404(service):
    r = post(service, "/v1/completions", {"model": "fake-model", "prompt": "Hi", "reward_model": "mine"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "reward_model"


def test_concurrent_requests_all_succeed_and_metrics_cover_every_replica(service):
    with httpx.Client(timeout=30) as client:
        before = _count(client.get(f"{service.url}/metrics").text)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(
                lambda i: client.post(f"{service.url}/v1/completions",
                                      json={"model": "fake-model", "prompt": f"Hi {i}", "reward_model": "slop"}).status_code,
                range(16),
            ))
        assert codes == [200] * 16
        after = _count(client.get(f"{service.url}/metrics").text)
    assert after - before == 16


def _count(metrics_text: str) -> float:
    return sample(metrics_text, "prune_requests_total", endpoint="/v1/completions", status="200")


def test_a_client_that_hangs_up_gets_its_candidates_aborted(service):
    def aborted():
        return sample(httpx.get(f"{service.url}/metrics", timeout=10).text, "prune_candidates_aborted_total")

    before = aborted()
    # Candidate 3 starts after 5 s (candidate_delays_s), the others finish in 0.6 s;
    # the client gives up after 1 s.
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{service.url}/v1/completions", json={"model": "fake-model", "prompt": "Hi", "best_of": 4},
                   timeout=1.0)
    give_up = time.monotonic() + 10
    while aborted() < before + 1 and time.monotonic() < give_up:
        time.sleep(0.2)
    assert aborted() == before + 1


def replica_processes(service, deployment: str):
    import psutil

    return [p for p in psutil.Process(service.proc.pid).children(recursive=True)
            if f"ServeReplica:prune:{deployment}" in " ".join(p.cmdline())]


def test_a_killed_scorer_replica_degrades_scoring_within_the_budget(service):
    import os
    import signal

    post(service, "/v1/completions", {"model": "fake-model", "prompt": "Hi", "best_of": 3})  # catalog read
    [scorer] = replica_processes(service, "scorer")
    os.kill(scorer.pid, signal.SIGKILL)
    started = time.monotonic()
    r = post(service, "/v1/completions", {"model": "fake-model", "prompt": "Hi", "best_of": 3,
                                          "latency_budget_ms": 3000})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["reranking"]["degraded"] in ("scorer_unavailable", "scorer_slow") and elapsed < 3.0
    print(f"scorer killed: answered in {elapsed:.2f} s, degraded ({r.json()['reranking']['degraded']})")


def test_a_killed_generator_replica_is_a_503_with_retry_after_and_the_service_recovers(service):
    # Last in this module: it kills the generator replica (Ray starts another).
    import concurrent.futures
    import os
    import signal

    replicas = replica_processes(service, "generator")
    assert len(replicas) == 1
    body = {"model": "fake-model", "prompt": "Hi", "best_of": 4, "latency_budget_ms": 20000}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # Candidate 3 starts after 5 s (candidate_delays_s): requests that reached the
        # replica are in flight from about 0.1 s to 5.6 s; it dies at 2.5 s.
        in_flight = [pool.submit(post, service, "/v1/completions", body) for _ in range(4)]
        time.sleep(2.5)
        os.kill(replicas[0].pid, signal.SIGKILL)
        killed = time.monotonic()
        answers = [f.result() for f in in_flight]
    print(f"requests in flight when the generator replica died: {[r.status_code for r in answers]}")
    # A request the dead replica was working on: 503 + Retry-After; one that had not
    # reached it yet is served by the replacement (200, or 504 if that took its budget). Never a 500.
    assert {r.status_code for r in answers} <= {200, 503, 504}, [r.text for r in answers]
    refused = [r for r in answers if r.status_code == 503]
    assert refused, "no request was in flight on the replica when it died"
    for r in refused:
        assert r.json()["error"]["code"] == "replica_unavailable" and int(r.headers["Retry-After"]) >= 1
    while time.monotonic() - killed < 120:
        try:
            again = httpx.post(f"{service.url}/v1/completions", timeout=10,
                               json={"model": "fake-model", "prompt": "Hi", "best_of": 1, "latency_budget_ms": 5000})
            if again.status_code == 200:
                break
            assert again.status_code in (503, 504), again.text  # refused or out of time while replaced: never a 500
        except httpx.TimeoutException:
            pass
        time.sleep(0.5)
    print(f"answering again {time.monotonic() - killed:.1f} s after the generator replica was killed")
    assert again.status_code == 200
