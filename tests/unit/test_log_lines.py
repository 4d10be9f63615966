"""``LineRenderer``: what one JSON log line holds (trace ids, level, timestamp, exception text,
caps and redaction), rendered through a structlog logger as the service configures it."""

from __future__ import annotations

import io
import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from router_service.observability.logging import (
    MAX_FIELD_CHARS,
    LineRenderer,
    LoopTurnStream,
    StdlibLines,
    UtcClock,
    bind_trace,
    reset_trace,
)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _logger(level: int = logging.INFO) -> tuple[Any, io.BytesIO]:
    raw = io.BytesIO()
    log = structlog.wrap_logger(
        LoopTurnStream(raw),  # type: ignore[arg-type]
        processors=[LineRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
    )
    return log, raw


def _lines(raw: io.BytesIO) -> list[dict[str, Any]]:
    text = raw.getvalue()
    assert text.endswith(b"\n")
    return [orjson.loads(line) for line in text.splitlines()]


def test_a_line_names_the_bound_trace_until_it_is_reset() -> None:
    log, raw = _logger()
    log.info("before")
    token = bind_trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    try:
        log.info("inside", kind="order")
        log.info("attempt", span_id="b7ad6b7169203331")  # the call's own span wins
    finally:
        reset_trace(token)
    log.info("after")
    before, inside, attempt, after = _lines(raw)
    assert "trace_id" not in before
    assert "trace_id" not in after
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["span_id"] == "00f067aa0ba902b7"
    assert inside["kind"] == "order"
    assert inside["event"] == "inside"
    assert attempt["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert attempt["span_id"] == "b7ad6b7169203331"


def test_levels_are_named_as_structlog_names_them_and_filtered() -> None:
    log, raw = _logger(logging.INFO)
    log.debug("hidden")
    log.info("a")
    log.warning("b")
    log.error("c")
    assert [line["level"] for line in _lines(raw)] == ["info", "warning", "error"]


def test_secrets_are_redacted_and_long_strings_capped() -> None:
    log, raw = _logger()
    log.info("x", api_key="k-123", Authorization="Bearer t", note="n" * (MAX_FIELD_CHARS + 10))
    (line,) = _lines(raw)
    assert line["api_key"] == "[redacted]"
    assert line["Authorization"] == "[redacted]"
    assert line["note"] == "n" * MAX_FIELD_CHARS + "…"
    assert b"k-123" not in raw.getvalue()
    assert b"Bearer" not in raw.getvalue()


def test_an_exception_is_rendered_whole_with_its_traceback() -> None:
    log, raw = _logger()
    try:
        raise ValueError("x" * (MAX_FIELD_CHARS * 2))
    except ValueError:
        log.exception("dispatch.crashed", log_id="abc")
    (line,) = _lines(raw)
    assert line["level"] == "error"
    assert "exc_info" not in line
    assert line["exception"].startswith("Traceback")
    assert "x" * (MAX_FIELD_CHARS * 2) in line["exception"]  # the traceback is never capped


def test_timestamps_are_utc_with_microseconds_and_move_on() -> None:
    clock = UtcClock()
    before = datetime.now(UTC).replace(microsecond=0)
    stamps = [clock.now() for _ in range(1000)]
    after = datetime.now(UTC)
    assert all(TS.match(stamp) for stamp in stamps)
    assert stamps == sorted(stamps)
    first = datetime.fromisoformat(stamps[0].replace("Z", "+00:00"))
    last = datetime.fromisoformat(stamps[-1].replace("Z", "+00:00"))
    assert before <= first <= last <= after


def test_a_standard_library_record_is_the_same_json_line() -> None:
    raw = io.BytesIO()
    handler = StdlibLines(LineRenderer(), LoopTurnStream(raw))  # type: ignore[arg-type]
    logger = logging.getLogger("tests.stdlib_lines")
    logger.propagate = False
    logger.addHandler(handler)
    token = bind_trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    try:
        logger.warning("Invalid %s received.", "HTTP request")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("Exception in ASGI application")
    finally:
        reset_trace(token)
        logger.removeHandler(handler)
    warning, error = _lines(raw)
    assert warning["event"] == "Invalid HTTP request received."
    assert warning["logger"] == "tests.stdlib_lines"
    assert warning["level"] == "warning"
    assert warning["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert TS.match(warning["ts"])
    assert error["level"] == "error"
    assert "ValueError: boom" in error["exception"]


def test_a_secret_is_redacted_every_time_whatever_its_case() -> None:
    log, raw = _logger()
    for key in ("note", "Password", "password", "note", "Password"):
        log.info("x", **{key: "s3cr3t"})
    values = [next(v for k, v in line.items() if k in ("note", "Password", "password"))
              for line in _lines(raw)]  # fmt: skip
    assert values == ["s3cr3t", "[redacted]", "[redacted]", "s3cr3t", "[redacted]"]
