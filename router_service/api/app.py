"""The app factory: settings in, a FastAPI app out; everything is built in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from router_service import __version__
from router_service.api.admin import router as admin_router
from router_service.api.auth import KeyRing
from router_service.api.connection_limits import ConnectionLimits
from router_service.api.edge import Edge
from router_service.api.errors import install_error_handlers
from router_service.api.explain import router as explain_router
from router_service.api.keep_alive import IdleConnections
from router_service.api.middleware import (
    HeadAsGet,
    NoNulInUrl,
    RouteFastPath,
    TraceMiddleware,
    UnexpectedErrors,
)
from router_service.api.protocol import HTTP_LIMITS
from router_service.api.replay_jobs import router as replay_jobs_router
from router_service.api.routes import router
from router_service.config.routing_source import RoutingSource
from router_service.config.settings import Settings
from router_service.console import ConsoleHeaders, error_page, install_console, running_console
from router_service.observability.logging import configure_logging
from router_service.observability.metrics import Metrics
from router_service.runtime.startup import running_services


def create_app(settings: Settings | None = None, routing: RoutingSource | None = None) -> FastAPI:
    """Fails fast (``ConfigError``) on a missing key or a bad routing file, before serving."""
    settings = settings or Settings()
    keys = KeyRing.from_settings(settings.api_key, settings.api_keys, settings.api_keys_file)
    routing = routing or RoutingSource.from_file(settings.routing_config)
    metrics = Metrics()
    edge = Edge.from_settings(settings, keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        configure_logging(settings.log_level)
        async with (
            running_services(settings, routing, metrics) as services,
            running_console(services, edge) as console,
        ):
            app.state.services = services
            app.state.edge = edge
            app.state.console = console
            limits = {
                "header_timeout_s": settings.header_timeout_s,
                "max_header_bytes": settings.max_header_bytes,
                "body_timeout_s": settings.body_timeout_s,
                "send_timeout_s": settings.send_timeout_s,
                "keep_alive_s": settings.keep_alive_s,
                "idle_connections": IdleConnections(settings.max_idle_connections),
                "connection_limits": ConnectionLimits.from_settings(settings),
            }
            yield {HTTP_LIMITS: limits}

    app = RouterApp(
        title="router-service",
        version=__version__,
        description="Classifies signals and routes them to HTTP agents, durably.",
        lifespan=lifespan,
        # Spans come from our own events sink (observability/otel.py), with the ids agents see.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app, page=error_page)
    app.include_router(router)
    install_console(app)
    app.include_router(explain_router)
    app.include_router(admin_router)
    app.include_router(replay_jobs_router)
    app.add_middleware(HeadAsGet)
    app.add_middleware(UnexpectedErrors)  # inside the trace: a 500 carries its ids
    app.add_middleware(NoNulInUrl)
    app.add_middleware(TraceMiddleware, metrics=metrics)  # every other request
    # Outermost: every answer under /console carries them, a 500 or NoNulInUrl's 422 included.
    app.add_middleware(ConsoleHeaders)
    app.hot_path = TraceMiddleware(RouteFastPath(), metrics=metrics)
    return app


class RouterApp(FastAPI):
    """FastAPI, with ``POST /route`` served in front of its middleware stack by ``hot_path``.

    Every signal would otherwise pass FastAPI's own layers (server errors, exception telemetry,
    the body limit), each an extra coroutine and ``send`` wrapper, before reaching a handler
    that needs none of them: the fast path maps its own errors and reads its own body limit."""

    hot_path: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_path
        if hot is not None and RouteFastPath.serves(scope):
            scope["app"] = self
            await hot(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
