"""JSON logs, one object per line on stdout, each with the request's ``trace_id``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, BinaryIO, cast

import orjson
import structlog

MAX_FIELD_CHARS = 512
# Never rendered, whatever a caller binds by mistake.
SECRET_KEYS = frozenset({"api_key", "x-api-key", "authorization", "password", "secret"})


def _cap_and_redact(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
        elif (
            key != "exception" and isinstance(event[key], str) and len(event[key]) > MAX_FIELD_CHARS
        ):
            event[key] = event[key][:MAX_FIELD_CHARS] + "…"
    return event


def configure_logging(level: str = "INFO") -> None:
    """Route structlog and the standard library's loggers to one JSON stream on stdout."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            _cap_and_redact,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # BytesLogger only writes and flushes its file.
        logger_factory=structlog.BytesLoggerFactory(
            cast(BinaryIO, LoopTurnStream(sys.stdout.buffer))
        ),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "router") -> Any:
    return structlog.get_logger(name)


class LoopTurnStream:
    """The log's output: the lines of one turn of the event loop leave in one write.

    structlog flushes after every line, and a signal logs two (its attempt and its outcome):
    two system calls a signal. Here a flush asked for inside a running event loop is done once,
    at the next turn of the loop, for every line written meanwhile; outside a loop (commands,
    threads) it is done at once. A line waits at most for the callbacks already due in this
    turn, never for a timer; a process killed in that moment loses those lines, as it would
    lose a line it had not yet written.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._due: asyncio.AbstractEventLoop | None = None  # the loop that owes a flush

    def write(self, data: bytes) -> int:
        return self._stream.write(data)

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._stream.flush()
            return
        if self._due is not loop:  # (a loop that closed owing one no longer counts)
            self._due = loop
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._due = None
        self._stream.flush()
