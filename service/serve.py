"""Start prune on a local Ray instance: `python -m service.serve deploy/local.yaml`.

Validates the config before anything starts, prepares the embedded model once,
starts Ray and Serve, deploys the application, and on Ctrl-C (or SIGTERM) shuts
Serve and Ray down so no process is left behind. On a running Ray cluster use
`serve deploy deploy/FILE.yaml` instead: the same file works for both.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import time

from service import private_apis
from service.config import (
    ConfigError,
    ServeFile,
    ServiceConfig,
    VLLMGeneratorConfig,
    check_exposure,
    load_serve_file,
)

log = logging.getLogger("prune")

# How HTTP reaches the ingress (`--front-door`). Ray Serve reads these flags when it
# starts, so they are set before Ray is; on a cluster, put them in every node's
# environment (deploy/kuberay/rayservice.yaml keeps Ray's Python proxy).
FRONT_DOORS = {
    # HAProxy (bundled with Ray Serve) listens on the HTTP port and forwards to each ingress
    # replica's own HTTP server: no Python proxy and no Ray call in front of admission.
    # Throughput mode runs the replica's code on its server's event loop and calls between
    # deployments over gRPC; replicas' logs still reach this console.
    # A stopping ingress replica stays open 30 s by default, for an outside load balancer to
    # deregister it (Ctrl-C took 32 s); this HAProxy is Serve's own and is reloaded at once,
    # so 2 s does. In-flight requests still finish first.
    "haproxy": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_LOG_TO_STDERR": "1",
                "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"},
    # Ray Serve's Python HTTP proxy, one Ray call away from the ingress.
    "proxy": {},
}


def deploy(serve_file: ServeFile, http: dict) -> None:
    """Deploy the file the way `serve deploy` does (declaratively), so that its
    per-deployment overrides (`deployments: [{name: scorer, user_config: ...}]`)
    apply here too, and a later `serve deploy` of an edited file is an update."""
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(serve_file.model_dump() | {"http_options": http})
    private_apis.serve_deploy(schema, http)
    names = [app.name for app in schema.applications]
    while True:
        time.sleep(1)
        statuses = serve.status().applications
        failed = [n for n in names if n in statuses and statuses[n].status == "DEPLOY_FAILED"]
        if failed:
            raise RuntimeError(f"deploying {failed[0]} failed: {statuses[failed[0]].message}")
        if all(n in statuses and statuses[n].status == "RUNNING" for n in names):
            return


def start_ray(front_door: str, num_cpus: float | None) -> None:
    """A Ray of our own, its processes started with the front door's flags."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for flag, value in FRONT_DOORS[front_door].items():  # before Ray starts: its processes inherit them
        os.environ.setdefault(flag, value)
    # Ray starts its workers at nice 15, Serve's HTTP proxy and controller included: on a
    # small machine the front door then waits behind the engine, and refusals meant to
    # take milliseconds take seconds. Every process of this job starts at nice 0 (the
    # deployments then set their own, see DeploymentConfig.niceness).
    # address="local": a Ray of our own, never one found through /tmp/ray/ray_current_cluster
    # (a cluster started on this machine earlier, perhaps long dead).
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"RAY_worker_niceness": "0"}})


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def read_config(args: argparse.Namespace) -> tuple[ServeFile, ServiceConfig, dict]:
    """The config file, prune's config in it, and the HTTP options it will listen with
    (the file's, or --host/--port), checked: keys are required beyond loopback."""
    serve_file, config = load_serve_file(args.config)
    http = dict(serve_file.http_options)
    http["host"] = args.host or http.get("host", "127.0.0.1")
    http["port"] = args.port or http.get("port", 8000)
    check_exposure(http["host"], config)
    return serve_file, config, http


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.serve", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a Ray Serve config file from deploy/")
    parser.add_argument("--host", help="override http_options.host")
    parser.add_argument("--port", type=int, help="override http_options.port")
    parser.add_argument("--num-cpus", type=float, help="CPUs Ray may schedule (default: all)")
    parser.add_argument("--front-door", choices=sorted(FRONT_DOORS),
                        default=os.environ.get("PRUNE_FRONT_DOOR", "haproxy"),
                        help="what serves HTTP in front of the ingress (default haproxy; env PRUNE_FRONT_DOOR)")
    args = parser.parse_args(argv)
    if args.front_door not in FRONT_DOORS:  # argparse checks the flag, not a default from the environment
        parser.error(f"PRUNE_FRONT_DOOR: {args.front_door!r} is not one of {', '.join(sorted(FRONT_DOORS))}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s prune %(message)s", datefmt="%H:%M:%S")

    started = time.time()
    try:
        serve_file, config, http = read_config(args)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if isinstance(config.generator, VLLMGeneratorConfig):
        from service.embedded import resolve_model_path

        log.info("model ready at %s", resolve_model_path(config.generator.model))

    import ray
    from ray import serve

    from service.app import metrics_dir

    # Counters of an earlier run must not leak into this one.
    shutil.rmtree(metrics_dir(config), ignore_errors=True)
    start_ray(args.front_door, args.num_cpus)
    # SIGTERM (docker stop, systemd) ends the service the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        deploy(serve_file, http)
        log.info("ready on http://%s:%s in %.1f s (Ctrl-C stops)", http["host"], http["port"], time.time() - started)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
