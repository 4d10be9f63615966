"""Pure ASGI middleware (no BaseHTTPMiddleware): trace context, in-flight gauge, access metrics,
and the fast path of POST /route."""

from __future__ import annotations

import time
from types import SimpleNamespace

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router_service.api.errors import response_for
from router_service.domain.errors import ValidationFailed
from router_service.observability.logging import bind_trace, get_logger, reset_trace
from router_service.observability.metrics import Metrics, children
from router_service.observability.tracing import TraceContext


class TraceMiddleware:
    """Continues or starts the W3C trace, binds it to every log line, returns ``traceparent``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._responses = children(metrics.http_responses)
        self.log = get_logger("http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                incoming = value.decode("latin-1")
                break
        trace = TraceContext.from_header(incoming)
        scope.setdefault("state", {})["trace"] = trace
        bound = bind_trace(trace.trace_id, trace.span_id)
        header = (b"traceparent", trace.traceparent.encode())
        status = 500
        started = time.perf_counter()

        async def send_with_trace(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_trace)
        finally:
            self.metrics.in_flight.dec()
            route = _route_name(scope)
            self._responses(route, f"{status // 100}xx").inc()
            if route != "/route":
                self._access(scope, route, status, started)
            reset_trace(bound)  # back to what was bound before

    def _access(self, scope: Scope, route: str, status: int, started: float) -> None:
        self.log.info(
            "http.request",
            method=scope["method"],
            route=route,
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )


def _route_name(scope: Scope) -> str:
    """The route's template (bounded), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class HeadAsGet:
    """HEAD is served as GET without its body (RFC 9110: what answers GET answers HEAD). The
    app sees GET; uvicorn, which still sees HEAD, writes the answer's headers and no body.
    FastAPI's routes answered only the methods they declare: HEAD was 405 on every GET
    endpoint, ``/health/live`` included, which some load balancers' health checks use."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send)
        finally:
            if "route" in as_get:  # for the trace's metrics and log line, outside
                scope["route"] = as_get["route"]


class NoNulInUrl:
    """A NUL (``%00``) in the path or the query string is refused with 422 before any handler
    runs. No log_id, filter or cursor holds one, and Postgres refuses NUL in text: it would
    otherwise reach the database and come back as a 503 ``database_unavailable``, a client's
    mistake reported as an outage. (A NUL byte sent raw is not HTTP: the protocol answers
    400.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            refused = ValidationFailed(
                "the URL holds a NUL character (%00), which no path or query may hold"
            )
            await response_for(refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class UnexpectedErrors:
    """An exception no handler maps becomes the JSON 500 here, inside the trace: the answer
    carries ``traceparent``, the ``request.crashed`` line the trace's ids, and the connection
    stays open for the client's next request. Starlette's own last-resort handler answers
    outside the trace middleware and then re-raises, so uvicorn logged the error a second time
    and closed the client's connection. An exception after the answer has started has nothing
    left to answer, and goes on up (the connection must close)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as exc:
            if started:
                raise
            await response_for(exc)(scope, receive, send)


class RouteFastPath:
    """Serves ``POST /route`` (the hot path) straight from the ASGI scope, in front of FastAPI:
    none of its middleware stack, router, dependency solving and exception middleware around
    it (``api/app.py``: ``RouterApp``). The handler and the error mapping are the same ones
    the documented FastAPI route uses; any exception becomes its JSON answer here."""

    marker = SimpleNamespace(path="/route")

    @staticmethod
    def serves(scope: Scope) -> bool:
        """``POST /route``; one with a NUL in its query goes round, to ``NoNulInUrl``'s 422."""
        return bool(
            scope["type"] == "http"
            and scope["path"] == "/route"
            and scope["method"] == "POST"
            and b"%00" not in scope["query_string"]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from router_service.api.routes import handle_route  # routes imports this module

        scope["route"] = self.marker
        request = Request(scope, receive)
        try:
            state = scope["app"].state
            response = await handle_route(request, state.services, state.edge)
        except Exception as exc:
            response = response_for(exc)
        await response(scope, receive, send)
