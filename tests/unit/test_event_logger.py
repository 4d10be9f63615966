"""``event_logger``: the per-signal events' lines are the lines ``get_logger`` writes (same
renderer, stream and level, without structlog's bound logger in between), and under any other
structlog configuration it is structlog's own logger."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from router_service.observability.logging import (
    EventLogger,
    StdlibLines,
    bind_trace,
    configure_logging,
    event_logger,
    get_logger,
    reset_trace,
)


class _Stdout:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``configure_logging`` onto a captured stdout; structlog's and the root logger's
    configuration put back afterwards."""
    saved = structlog.get_config()

    def configure(level: str) -> io.BytesIO:
        stdout = _Stdout()  # set here: pytest puts its own capture back before the test runs
        monkeypatch.setattr(sys, "stdout", stdout)
        configure_logging(level)
        return stdout.buffer

    yield configure
    structlog.configure(**saved)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibLines)]:
        root.removeHandler(handler)


def _lines(raw: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in raw.getvalue().splitlines()]


def test_its_line_is_the_line_get_logger_writes(configured: Any) -> None:
    raw = configured("INFO")
    log = event_logger()
    assert isinstance(log, EventLogger)
    token = bind_trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    try:
        fields = {"log_id": "ab" * 32, "agents": ["orders"], "password": "p", "note": "n" * 600}
        log.info("signal.routed", **fields)
        get_logger().info("signal.routed", **fields)
    finally:
        reset_trace(token)
    ours, structlogs = _lines(raw)
    assert ours.pop("ts")
    assert structlogs.pop("ts")
    assert list(ours) == list(structlogs)  # the same keys in the same order
    assert ours == structlogs
    assert ours["password"] == "[redacted]"
    assert ours["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ours["level"] == "info"


def test_it_keeps_the_configured_level(configured: Any) -> None:
    raw = configured("WARNING")
    log = event_logger()
    log.info("agent.attempt", agent="a")
    log.warning("agent.circuit", agent="a", state="open")
    log.error("dispatch.crashed", log_id="x")
    assert [(line["event"], line["level"]) for line in _lines(raw)] == [
        ("agent.circuit", "warning"),
        ("dispatch.crashed", "error"),
    ]


def test_under_another_configuration_it_is_structlogs_logger(configured: Any) -> None:
    configured("INFO")
    with structlog.testing.capture_logs() as captured:
        log = event_logger()
        log.info("signal.routed", log_id="x")
    assert not isinstance(log, EventLogger)
    assert captured == [{"event": "signal.routed", "log_id": "x", "log_level": "info"}]
