"""A collector that accepts and never answers must not hold the router's shutdown."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind

from router_service.domain.trace import new_span_id, new_trace_id
from router_service.observability.otel import SpanExporter
from router_service.observability.tracing import TraceContext
from tests.support.collector import Collector
from tests.support.ports import free_port
from tests.support.processes import ROOT

# The span exporter made, one span recorded, its flush given one second, then the process ends:
# the SDK's own flush at exit used to run again, with no bound.
SCRIPT = """
import sys
from opentelemetry.trace import SpanKind
from router_service.observability.otel import SpanExporter
from router_service.observability.tracing import TraceContext

exporter = SpanExporter(sys.argv[1])
context = TraceContext(trace_id="ab" * 16, span_id="cd" * 8)
exporter.record("signal", context, 0.001, {"kind": "k"}, kind=SpanKind.SERVER)
print("flushed" if exporter.shutdown(timeout_s=1.0) else "abandoned", flush=True)
"""


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """Accepts connections, reads what comes, never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_the_flush_at_shutdown_gives_up_at_its_bound_against_a_silent_collector(
    silent_collector: str,
) -> None:
    """SIGTERM took 27-30 s with OTel on and the collector down, hanging or answering 503: the
    SDK exported batch after batch, each with a 10-s timeout, and again at exit."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, silent_collector],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "abandoned"
    # One second of flush, the interpreter's start and end; the SDK's own export timeout
    # (10 s) alone would exceed it.
    assert elapsed < 8.0, elapsed


def _exporter(endpoint: str) -> tuple[SpanExporter, Counter[str]]:
    counts: Counter[str] = Counter()
    return SpanExporter(endpoint, counted=lambda result, n: counts.update({result: n})), counts


def _record(exporter: SpanExporter, spans: int, *, sampled: bool = True) -> None:
    for _ in range(spans):
        context = TraceContext(new_trace_id(), new_span_id(), sampled)
        exporter.record("signal", context, 0.001, {"kind": "k"}, kind=SpanKind.SERVER)


def test_spans_are_counted_as_exported_or_failed() -> None:
    """``otel_spans_total``: what the collector took, and what it refused (400: not retried)."""
    for status, result in ((200, "exported"), (400, "failed")):
        with Collector(status) as collector:
            exporter, counts = _exporter(collector.url)
            _record(exporter, 3)
            _record(exporter, 2, sampled=False)  # the caller said not to record them
            assert exporter.shutdown(timeout_s=5.0)
        assert counts == {result: 3}
        assert len(collector.spans) == (3 if status == 200 else 0)


def test_the_spans_a_full_queue_drops_are_counted() -> None:
    """A collector away holds the SDK's one export (retried for its 3 s): its queue of 2,048
    fills and drops the newest. Only one line of the SDK's log said so."""
    exporter, counts = _exporter(f"http://127.0.0.1:{free_port()}")  # nothing listens
    _record(exporter, 3000)
    # The export under way took 512 or none of them: the rest, past 2,048, were dropped.
    assert 3000 - 2048 - 512 <= counts["dropped"] <= 3000 - 2048
    exporter.shutdown(timeout_s=0.1)
