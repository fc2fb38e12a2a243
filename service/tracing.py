"""Where a request's time went: `reranking.timings` on every answer, and the same as
OpenTelemetry spans when tracing is configured.

Nothing is traced while the request runs: the candidates run in the generator
replica, the reward calls in the scorer's, and threading a span context through
them would cost every request. Instead each part stamps wall-clock times on what
it returns anyway (`CandidateTiming` on each candidate, `ScoreCall` per reward
call, `Selection.started/selected`, `RerankPlan.admitted_at`), and once the answer
is written the ingress turns them into one span tree, with explicit start and end
times:

    prune.request                    arrival -> answer written
      prune.admission                arrival -> admitted
      prune.generate                 candidates asked for -> the last one arrived
        prune.candidate (one each)   its engine request -> finished, pruned or cut
      prune.score (one per call)     a reward call
      prune.select                   the last candidate -> the answer chosen
      prune.respond                  chosen -> written

With tracing off (the default) no span is made and the SDK is not imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from service.config import TracingConfig
    from service.selection import Selection
    from service.plan import RerankPlan


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def timings(plan: RerankPlan, selection: Selection) -> dict[str, Any]:
    """The `reranking.timings` block, in milliseconds: admission (arrival to
    admitted), the longest wait in the engine's queue and the longest prefill (where
    the engine reports them), generation, each reward call, and selection (the last
    candidate to the answer chosen)."""
    arrived, generated = plan.budget.arrived, selection.started + selection.generate_s
    timed = [c.timing for c in selection.candidates if c.timing is not None]
    queued = [t.queued_s for t in timed if t.queued_s is not None]
    prefill = [t.first_token - t.started - t.queued_s for t in timed
               if t.first_token is not None and t.queued_s is not None]
    first = [t.first_token for t in timed if t.first_token is not None]
    return {
        "admission_ms": _ms(plan.admitted_at - arrived) if plan.admitted_at else None,
        "first_token_ms": _ms(min(first) - selection.started) if first else None,
        "queue_ms": _ms(max(queued)) if queued else None,
        "prefill_ms": _ms(max(0.0, max(prefill))) if prefill else None,
        "generation_ms": _ms(selection.generate_s),
        "scoring_ms": [_ms(call.seconds) for call in selection.score_calls],
        "selection_ms": _ms(max(0.0, selection.selected - generated)),
    }


class RequestTracer:
    """Turns answered requests into span trees (module docstring), exported by `provider`."""

    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer("prune")

    @classmethod
    def from_config(cls, config: TracingConfig) -> RequestTracer | None:
        """An OTLP/HTTP exporter to the configured collector, batched off the request path;
        None when tracing is off."""
        if not config.enabled:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

        provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}),
                                  sampler=TraceIdRatioBased(config.sample_ratio))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint)))
        return cls(provider)

    def record(self, plan: RerankPlan, selection: Selection, written: float, route: str) -> None:
        """One answered request's spans; `written`: wall clock when its last byte was sent."""
        from opentelemetry import trace

        ns = _nanoseconds
        arrived = plan.budget.arrived
        root = self.tracer.start_span("prune.request", start_time=ns(arrived), attributes={
            "http.route": route, "prune.reward_model": plan.reward_model, "prune.best_of": plan.best_of,
            "prune.effective_best_of": plan.effective_best_of, "prune.budget_ms": plan.budget.budget_ms,
            "prune.candidates_generated": selection.candidates_generated,
            "prune.candidates_pruned": selection.candidates_pruned, "prune.stopped_early": selection.stopped_early,
            "prune.degraded": selection.degraded or "", "prune.completion_tokens": selection.completion_tokens,
        })
        inside = trace.set_span_in_context(root)

        def child(name: str, start: float, end: float, attributes: dict | None = None, context=inside):
            span = self.tracer.start_span(name, context=context, start_time=ns(start), attributes=attributes or {})
            return span, end

        spans = []
        if plan.admitted_at:
            spans.append(child("prune.admission", arrived, plan.admitted_at))
        generated = selection.started + selection.generate_s
        generate, generate_end = child("prune.generate", selection.started, generated)
        scores = {sc.candidate.index: sc.score for sc in selection.scored}
        chosen = {sc.candidate.index for sc in selection.chosen}
        below = trace.set_span_in_context(generate)
        for candidate in selection.candidates:
            timing = candidate.timing
            if timing is None:
                continue
            attributes = {"prune.candidate": candidate.index, "prune.tokens": candidate.completion_tokens,
                          "prune.finished": candidate.finished, "prune.pruned": candidate.pruned,
                          "prune.cut": not candidate.finished and not candidate.pruned,
                          "prune.finish_reason": candidate.finish_reason, "prune.chosen": candidate.index in chosen}
            if candidate.index in scores:
                attributes["prune.score"] = scores[candidate.index]
            if timing.queued_s is not None:
                attributes["prune.queue_ms"] = _ms(timing.queued_s)
            span, end = child("prune.candidate", timing.started, timing.ended, attributes, context=below)
            if timing.first_token is not None:
                span.add_event("first_token", timestamp=ns(timing.first_token))
            if candidate.pruned:
                generate.add_event("pruning checkpoint", timestamp=ns(timing.ended),
                                   attributes={"prune.candidate": candidate.index,
                                               "prune.tokens": candidate.completion_tokens,
                                               "prune.checkpoint": candidate.pruned_at})
            span.end(end_time=ns(end))
        generate.end(end_time=ns(generate_end))
        for call in selection.score_calls:
            spans.append(child("prune.score", call.started, call.started + call.seconds, {"prune.texts": call.texts}))
        spans.append(child("prune.select", generated, selection.selected))
        spans.append(child("prune.respond", selection.selected, written))
        for span, end in spans:
            span.end(end_time=ns(max(end, 0.0)))
        root.end(end_time=ns(written))


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)
