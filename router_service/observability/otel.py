"""Optional OpenTelemetry export (OTLP over HTTP), enabled by ``OTEL_EXPORTER_OTLP_ENDPOINT``.

Spans are made from the events the service already emits, after the fact, with the very trace
and span ids that the logs carry and that agents received in ``traceparent``. When the endpoint is
unset this module is never imported: no OpenTelemetry cost on the hot path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from router_service import __version__
from router_service.observability.tracing import TraceContext


class _PresetIds(RandomIdGenerator):
    """Hands the SDK the ids we already chose; the next ``start_span`` takes them."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_trace_id(self) -> int:
        return self.trace_id or super().generate_trace_id()

    def generate_span_id(self) -> int:
        return self.span_id or super().generate_span_id()


def _link(trace_id: str) -> Link:
    """A link to another trace. The log keeps trace ids, not the span that received a signal,
    so the link names the trace with a span id taken from its low 64 bits."""
    context = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(trace_id[16:], 16) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return Link(context, {"router.link": "replay_of"})


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


# A collector that is down, slow or failing must not hold the router's shutdown: one export
# waits at most EXPORT_TIMEOUT_S, and the flush at shutdown at most SHUTDOWN_TIMEOUT_S in all
# (the SDK's own exported batch after batch, each with its 10-s timeout and retries: SIGTERM
# took 27-30 s against a collector down, hanging or answering 503).
EXPORT_TIMEOUT_S = 3.0
SHUTDOWN_TIMEOUT_S = 5.0


# ``counted(result, spans)``: ``exported``, ``failed`` (the collector refused them or was away
# for the export's whole timeout) or ``dropped`` (the SDK's queue was full). What is still
# queued when the shutdown's flush gives up is not counted: ``otel.flush_abandoned`` says so.
SpanCount = Callable[[str, int], None]


class _CountedExporter(OTLPSpanExporter):
    def __init__(self, counted: SpanCount, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counted = counted

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self._counted("exported" if result is SpanExportResult.SUCCESS else "failed", len(spans))
        return result


class _CountedProcessor(BatchSpanProcessor):
    """Counts the spans the SDK drops because its queue is full (its log says so once)."""

    def __init__(self, exporter: _CountedExporter, counted: SpanCount) -> None:
        super().__init__(exporter)
        self._counted = counted

    def on_end(self, span: ReadableSpan) -> None:
        # The SDK's queue, read as its own ``emit`` reads it: a full queue drops a span.
        queue = getattr(self._batch_processor, "_queue", None)
        if queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen:
            self._counted("dropped", 1)
        super().on_end(span)


def _uncounted(result: str, spans: int) -> None:
    pass


class SpanExporter:
    def __init__(
        self,
        endpoint: str,
        service_name: str = "router-service",
        *,
        counted: SpanCount = _uncounted,
    ) -> None:
        self._ids = _PresetIds()
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        # No flush of its own at exit: ``shutdown`` is the one, bounded.
        self._provider = TracerProvider(
            resource=resource, id_generator=self._ids, shutdown_on_exit=False
        )
        exporter = _CountedExporter(
            counted, endpoint=_traces_url(endpoint), timeout=EXPORT_TIMEOUT_S
        )
        self._provider.add_span_processor(_CountedProcessor(exporter, counted))
        self._tracer = self._provider.get_tracer("router_service")

    def record(
        self,
        name: str,
        context: TraceContext,
        duration_s: float,
        attributes: dict[str, Any],
        *,
        kind: SpanKind,
        error: str | None = None,
    ) -> None:
        if not context.sampled:
            return  # the caller's traceparent said not to record this trace (W3C sampled flag)
        end = time.time_ns()
        parent = None
        if context.parent_id:
            remote = SpanContext(
                trace_id=int(context.trace_id, 16),
                span_id=int(context.parent_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
        self._ids.trace_id = int(context.trace_id, 16)
        self._ids.span_id = int(context.span_id, 16)
        try:
            span = self._tracer.start_span(
                name,
                context=parent,
                kind=kind,
                start_time=end - int(duration_s * 1e9),
                attributes={k: v for k, v in attributes.items() if v is not None},
                links=[_link(trace_id) for trace_id in context.links],
            )
        finally:
            self._ids.trace_id = self._ids.span_id = 0
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> bool:
        """Flushes what is queued, for at most ``timeout_s``; False when the collector had not
        taken it all by then (what is left goes with the process)."""
        flush = threading.Thread(target=self._provider.shutdown, name="otel-flush", daemon=True)
        flush.start()
        flush.join(timeout_s)
        return not flush.is_alive()
