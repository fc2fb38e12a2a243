"""The load-test tooling against a live (fake-generator) API: the commands a user
runs produce the reports they read."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn

from service.api import create_api
from service.config import parse_config
from service.serving import local_reranker
from tests.service_process import ROOT


@pytest.fixture(scope="module")
def url():
    config = parse_config({
        "generator": {"kind": "fake", "served_model_name": "fake-model", "seconds_per_token": 0.005,
                      "texts": ["One answer here.", "Another, longer answer here.", "A third."]},
        "reward_models": {"fake": {"kind": "fake"}},
        "default_reward_model": "fake",
    })
    api = create_api(asyncio.run(local_reranker(config)))  # fakes bind to no event loop
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def run(args, **env):
    return subprocess.run([sys.executable, "-m", "loadtests.load", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


def test_headless_run_writes_reports_and_a_summary(url, tmp_path):
    out = tmp_path / "load"
    done = run(["--url", url, "--users", "2", "--time", "4s", "--out", str(out)],
               PRUNE_INVALID_SHARE="0.3", PRUNE_STREAM_SHARE="0.5", PRUNE_PRUNING_SHARE="0.3",
               PRUNE_BUDGETS_MS="5000", PRUNE_BEST_OF="2,3")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "load_summary.json").read_text())
    assert summary["requests"] > 5 and summary["failure_rate"] == 0
    assert summary["invalid_answered_4xx"] > 0 and summary["invalid_answered_otherwise"] == 0
    assert summary["goodput_per_s"] > 0 and summary["on_time_share"] == 1
    assert summary["stream_ttfb_p50_s"] is not None
    assert 2 <= summary["mean_effective_best_of"] <= 3
    stats = (tmp_path / "load_stats.csv").read_text()
    assert "chat bo" in stats and "(expect 4xx)" in stats and "TTFB" in stats
    assert (tmp_path / "load.html").stat().st_size > 1000
    assert "goodput" in done.stdout


def test_a_server_error_counts_as_a_failure(url, tmp_path):
    # A budget the server cannot meet (1 ms) is a 504 for every request: failures, no goodput.
    out = tmp_path / "late"
    run(["--url", url, "--users", "1", "--time", "2s", "--out", str(out)],
        PRUNE_INVALID_SHARE="0", PRUNE_BUDGETS_MS="1")
    summary = json.loads((tmp_path / "late_summary.json").read_text())
    assert summary["requests"] > 0 and summary["failure_rate"] == 1 and summary["goodput_per_s"] == 0


def test_sweep_writes_a_table_and_a_plot(url, tmp_path):
    out = tmp_path / "sweep"
    done = run(["--url", url, "--sweep", "1,2", "--time", "2s", "--out", str(out)], PRUNE_INVALID_SHARE="0")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("users,") and len(lines) == 3
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
