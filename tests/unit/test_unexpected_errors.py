"""The last-resort answer to an exception no handler maps: inside the trace middleware, so the
500 carries ``traceparent`` and the ``request.crashed`` line the same trace's ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from router_service.api.middleware import TraceMiddleware, UnexpectedErrors
from router_service.observability.logging import LineRenderer
from router_service.observability.metrics import Metrics


class Lines:
    """structlog's logger for the test: the rendered JSON lines, kept."""

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []

    def msg(self, line: bytes) -> None:
        self.kept.append(json.loads(line))

    error = info = warning = msg


@pytest.fixture
def lines() -> Iterator[Lines]:
    kept = Lines()
    structlog.configure(processors=[LineRenderer()], logger_factory=lambda *_args: kept)
    try:
        yield kept
    finally:
        structlog.reset_defaults()


def _serve(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    wrapped = TraceMiddleware(UnexpectedErrors(app), metrics=Metrics())
    asyncio.run(wrapped(scope, receive, send))
    return sent


def test_an_exception_before_the_answer_is_a_500_logged_in_its_trace(lines: Lines) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    start, body = _serve(failing)
    assert start["status"] == 500
    assert json.loads(body["body"])["error"]["code"] == "internal_error"
    traceparent = dict(start["headers"])[b"traceparent"].decode()
    [crashed] = [line for line in lines.kept if line["event"] == "request.crashed"]
    assert crashed["trace_id"] == traceparent.split("-")[1]
    assert "RuntimeError: a bug" in crashed["exception"]


def test_an_exception_after_the_answer_started_goes_on_up(lines: Lines) -> None:
    async def failing_late(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-answer")

    with pytest.raises(RuntimeError, match="mid-answer"):
        _serve(failing_late)
    assert not [line for line in lines.kept if line["event"] == "request.crashed"]
