"""Run `python -m service.serve CONFIG` as a child process, the way `make serve` does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The HAProxy front door's other ports (its stats page and metrics, Ray's fallback proxy):
# free ones, so a service started by the suite never collides with one already running here.
HAPROXY_PORT_FLAGS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                      "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


class ServiceProcess:
    def __init__(self, config: Path | str, log_path: Path, ready_timeout_s: float, front_door: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.serve", str(config), "--port", str(self.port)]
            + (["--front-door", front_door] if front_door else []),
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"PYTHONUNBUFFERED": "1"} | {flag: str(free_port()) for flag in HAPROXY_PORT_FLAGS},
        )
        self.ready_s = self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"service not ready after {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> tuple[int, list[int]]:
        """Ctrl-C the service; return its exit code and any descendants still alive after."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=30)
        for p in alive:
            p.kill()
        self.log.close()
        return code, [p.pid for p in alive]
