"""Metrics from every node of a Ray cluster: one exporter per node, found through the ingress.

Each replica writes its metrics into a folder of its own Ray node
(prometheus_client's multiprocess mode; `bind_node_folder`). On each node exactly
one process serves that folder at http://<node ip>:<metrics_port>/metrics: every
replica starts `serve_node_metrics`, which waits for the folder's lock; the holder
serves, and when it dies (replica replaced, scaled down) the lock passes to
another replica of the node within seconds. The holder records its address in
Ray's key-value store, and `GET /metrics/targets` on the ingress lists the
addresses of the live nodes in Prometheus's HTTP service-discovery format.

So Prometheus scrapes each node once and sums across nodes: a counter is
counted on the node where it was incremented, never twice. A folder per node
(not per machine) keeps that true when several Ray nodes share a machine, as in
the test suite's local cluster.
"""

from __future__ import annotations

import fcntl
import hmac
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from service import private_apis

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

FOLDER_ENV = "PRUNE_METRICS_DIR"  # the base folder; each node writes into <base>/node-<id>
PORT_ENV = "PRUNE_METRICS_PORT"
TOKEN_ENV_ENV = "PRUNE_METRICS_TOKEN_ENV"  # names the variable holding the exporters' bearer token (if any)
KV_NAMESPACE = "prune_metrics"
_LOCK_RETRY_S = 2.0
_started = False


def _ray_node() -> tuple[str, str] | None:
    """(node id, node ip) of this process's Ray node, or None outside Ray."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()


def bind_node_folder(created: Iterable[Any] = ()) -> str | None:
    """Point prometheus_client's multiprocess mode at this node's folder, for the metrics
    `created` already and every one created later (service.metrics.bind_to_node).

    The folder depends on the node, which is only known inside the replica, so
    PROMETHEUS_MULTIPROC_DIR cannot simply be set in the deployment's environment.
    """
    base = os.environ.get(FOLDER_ENV)
    if not base:
        return None
    node = _ray_node()
    folder = Path(base) / f"node-{node[0][:16] if node else 'local'}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    private_apis.use_multiprocess_values(created)
    return str(folder)


def serve_node_metrics(registry: Callable[[], CollectorRegistry]) -> None:
    """Called by every replica: serve this node's metrics (`registry`, service.metrics's
    node_registry) if no other process does (now or once the one that does dies).
    Returns at once; a daemon thread waits."""
    global _started
    folder, node = os.environ.get("PROMETHEUS_MULTIPROC_DIR"), _ray_node()
    if _started or not folder or node is None or not os.environ.get(PORT_ENV):
        return
    _started = True
    threading.Thread(target=_serve_when_elected, args=(registry, Path(folder), int(os.environ[PORT_ENV]), *node),
                     daemon=True, name="prune-node-metrics").start()


def exporter_app(registry: CollectorRegistry, token: str | None) -> Callable:
    """The node's metrics as a WSGI app; with a `token`, only for `Authorization: Bearer <token>`
    (Prometheus's `authorization`), so that the node's address does not hand its metrics to anyone."""
    from prometheus_client import make_wsgi_app

    app = make_wsgi_app(registry)
    if not token:
        return app
    expected = f"Bearer {token}".encode()

    def guarded(environ, start_response):
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or invalid bearer token\n"]
        return app(environ, start_response)

    return guarded


def _start_exporter(app: Callable, addr: str, port: int):
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # one line per scrape is noise
            pass

    class Server(ThreadingWSGIServer):  # IPv4 or IPv6, as the node's address is
        address_family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(addr, port, app, Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True, name="prune-node-exporter").start()
    return server


def _serve_when_elected(node_registry: Callable[[], CollectorRegistry], folder: Path, port: int, node_id: str,
                        node_ip: str) -> None:
    token_env = os.environ.get(TOKEN_ENV_ENV)
    token = os.environ.get(token_env, "").strip() if token_env else None
    if token_env and not token:  # a token was asked for: never serve the node's metrics without it
        log.error("metrics_token_env names %s, which is unset or empty here: this node's metrics are not served",
                  token_env)
        return
    app = exporter_app(node_registry(), token)
    lock = open(folder / "exporter.lock", "a+")  # held (never closed) for the life of this process
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(_LOCK_RETRY_S)
    try:
        server = _start_exporter(app, node_ip, port)
    except OSError:  # the port is taken (another Ray node on this machine): any free one; discovery tells
        log.warning("metrics port %s is in use on %s; serving this node's metrics on a free port", port, node_ip)
        server = _start_exporter(app, node_ip, 0)
    address = f"{node_ip}:{server.server_port}"
    private_apis.kv_put(node_id, address, namespace=KV_NAMESPACE)
    log.info("serving this node's metrics at http://%s/metrics", address)


def targets() -> list[dict[str, Any]]:
    """Prometheus HTTP service discovery: one target group per live node with an exporter."""
    import ray

    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    groups = []
    for node_id, address in private_apis.kv_items(KV_NAMESPACE).items():
        if node_id in alive and _answers(address):
            groups.append({"targets": [address], "labels": {"ray_node_id": node_id}})
    return sorted(groups, key=lambda group: group["targets"][0])


def _answers(address: str, timeout_s: float = 0.5) -> bool:
    """A node whose replicas are all gone (scaled down) keeps its stale address: leave it out."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False
