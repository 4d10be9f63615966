"""W3C trace context. It lives in the domain (``domain/trace.py``), which the service may
import; this module keeps the old import path working for the edge and the tests."""

from __future__ import annotations

from router_service.domain.trace import TraceContext, new_span_id, new_trace_id

__all__ = ["TraceContext", "new_span_id", "new_trace_id"]
