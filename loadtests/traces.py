"""A minimal OTLP/HTTP trace receiver that prints each request's span tree.

    python -m loadtests.traces --port 4318 --out docs/perf/trace.txt --traces 1
    # a config with `tracing: {enabled: true}` exports to http://127.0.0.1:4318/v1/traces

For a look at prune's traces without running a collector (Jaeger, Tempo, the
OpenTelemetry Collector read the same OTLP): it listens on loopback only, and stops
after --traces request trees or --timeout-s seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HIDDEN = {"http.route"}


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def render(spans: list) -> str:
    """One trace's spans as an indented tree, times in ms from the root's start."""
    by_parent: dict[bytes, list] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        by_parent.setdefault(span.parent_span_id if span.parent_span_id in ids else b"", []).append(span)
    roots = by_parent.get(b"", [])
    t0 = min(span.start_time_unix_nano for span in spans)
    lines: list[str] = []

    def walk(span, depth: int) -> None:
        start = (span.start_time_unix_nano - t0) / 1e6
        took = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        attributes = {a.key.removeprefix("prune."): value_of(a.value) for a in span.attributes if a.key not in HIDDEN}
        shown = " ".join(f"{k}={round(v, 3) if isinstance(v, float) else v}" for k, v in attributes.items())
        lines.append(f"{'  ' * depth}{span.name:<{28 - 2 * depth}} {start:8.1f} +{took:8.1f} ms  {shown}".rstrip())
        for event in span.events:
            at = (event.time_unix_nano - t0) / 1e6
            lines.append(f"{'  ' * (depth + 1)}* {event.name} at {at:.1f} ms")
        for child in sorted(by_parent.get(span.span_id, []), key=lambda s: (s.start_time_unix_nano, s.name)):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


class Receiver:
    def __init__(self, wanted: int):
        self.traces: dict[bytes, list] = {}
        self.complete: list[bytes] = []
        self.wanted = wanted
        self.done = threading.Event()

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.traces.setdefault(span.trace_id, []).append(span)
                    if not span.parent_span_id and span.trace_id not in self.complete:  # the root ends last
                        self.complete.append(span.trace_id)
        if len(self.complete) >= self.wanted:
            self.done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.traces", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--traces", type=int, default=1, help="stop after this many request trees")
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--out", help="also write the trees to this file")
    args = parser.parse_args(argv)
    receiver = Receiver(args.traces)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.take(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"receiving OTLP/HTTP traces on http://127.0.0.1:{args.port}/v1/traces", flush=True)
    started = time.monotonic()
    while not receiver.done.wait(0.5) and time.monotonic() - started < args.timeout_s:
        pass
    time.sleep(1)  # spans of the last tree still in flight
    server.shutdown()
    trees = "\n\n".join(render(receiver.traces[trace_id]) for trace_id in receiver.complete[:args.traces])
    print(trees)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(trees + "\n")
    return 0 if receiver.complete else 1


if __name__ == "__main__":
    sys.exit(main())
