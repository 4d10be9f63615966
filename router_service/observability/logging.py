"""JSON logs, one object per line on stdout, each with the request's ``trace_id``.

structlog's bound loggers stay the API (``get_logger(name).info("event", key=value)``). Its
processor chain is replaced by one processor, ``LineRenderer``, that does what the stock chain
did (trace ids from the context, level, UTC timestamp, exception text, field caps and
redaction, orjson) in one pass: two lines per signal run it, and the stock chain cost about
twice as much (``python -m bench.log_cost``; ``docs/performance-analysis.md``). The two events
every signal emits go through ``event_logger``: the same renderer, stream and level, without the
bound logger's steps in between.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from typing import Any, BinaryIO

import orjson
import structlog

MAX_FIELD_CHARS = 512
# Never rendered, whatever a caller binds by mistake.
SECRET_KEYS = frozenset({"api_key", "x-api-key", "authorization", "password", "secret"})
MAX_PLAIN_KEYS = 1024  # bounds the renderer's memory of checked keys, whatever callers pass

# The trace of the request being served: (trace_id, span_id), bound by the trace middleware.
_TRACE: ContextVar[tuple[str, str] | None] = ContextVar("router_log_trace", default=None)
_LEVELS = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level names them


def bind_trace(trace_id: str, span_id: str) -> Token[tuple[str, str] | None]:
    """Every line logged in this context names the trace; ``reset_trace`` undoes it."""
    return _TRACE.set((trace_id, span_id))


def reset_trace(token: Token[tuple[str, str] | None]) -> None:
    _TRACE.reset(token)


class UtcClock:
    """ISO 8601 UTC timestamps with microseconds and a ``Z``; the date and time of day are
    formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{nanos // 1000:06d}Z"


class LineRenderer:
    """The one processor: an event dict in, one JSON line (bytes, newline included) out."""

    def __init__(self) -> None:
        self._clock = UtcClock()
        # Keys seen not to be secret (the code's own names, a few dozen): checked once each.
        self._plain_keys: set[str] = set()

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> bytes:
        trace = _TRACE.get()
        if trace is not None:  # the call's own keys win, as with structlog's merge_contextvars
            event.setdefault("trace_id", trace[0])
            event.setdefault("span_id", trace[1])
        event["level"] = _LEVELS.get(method, method)
        event["ts"] = self._clock.now()
        if "exc_info" in event:
            event = structlog.processors.format_exc_info(logger, method, event)
        plain = self._plain_keys
        for key, value in event.items():
            if key not in plain:
                if key.lower() in SECRET_KEYS:
                    event[key] = "[redacted]"
                    continue
                if len(plain) < MAX_PLAIN_KEYS:
                    plain.add(key)
            if type(value) is str and len(value) > MAX_FIELD_CHARS and key != "exception":
                event[key] = value[:MAX_FIELD_CHARS] + "…"
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)


def configure_logging(level: str = "INFO") -> None:
    """Route structlog and the standard library's loggers to one JSON stream on stdout."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    output = LoopTurnStream(sys.stdout.buffer)
    renderer = LineRenderer()
    structlog.configure(
        processors=[renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_args: output,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibLines)]:
        root.removeHandler(handler)  # configured again (a reload, another app in the process)
    root.addHandler(StdlibLines(renderer, output))
    root.setLevel(numeric)


class StdlibLines(logging.Handler):
    """The standard library's records (uvicorn's, asyncio's, the drivers') as the same JSON
    lines as ours: ``event`` is the message, ``logger`` the logger's name."""

    def __init__(self, renderer: LineRenderer, output: LoopTurnStream) -> None:
        super().__init__()
        self._renderer = renderer
        self._output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event: dict[str, Any] = {"event": record.getMessage(), "logger": record.name}
            if record.exc_info:
                event["exc_info"] = record.exc_info
            self._output.msg(self._renderer(None, record.levelname.lower(), event))
        except Exception:
            self.handleError(record)


def get_logger(name: str = "router") -> Any:
    return structlog.get_logger(name)


def event_logger() -> Any:
    """A logger for the events every signal emits (``agent.attempt``, ``signal.routed``): the
    same lines as ``get_logger``'s, from the same renderer into the same stream at the same
    level, made from structlog's configuration as ``configure_logging`` left it. Under any other
    configuration (a test's ``structlog.testing.capture_logs``, logging not configured) it is
    structlog's own bound logger."""
    bound = structlog.get_logger().bind()
    config = structlog.get_config()
    processors, output = config["processors"], config["logger_factory"]()
    ours = len(processors) == 1 and isinstance(processors[0], LineRenderer)
    if ours and isinstance(output, LoopTurnStream):
        return EventLogger(processors[0], output, bound.get_effective_level())
    return bound


class EventLogger:
    """``info``, ``warning`` and ``error`` as structlog's filtering logger has them, without its
    steps between the call and the renderer (the lazy proxy, the context's copy, the processor
    loop, the method lookup): about 3 µs of a line's 6 on this machine, two lines a signal
    (``python -m bench.log_cost``)."""

    __slots__ = ("_min_level", "_render", "_write")

    def __init__(self, renderer: LineRenderer, output: LoopTurnStream, min_level: int) -> None:
        self._render = renderer
        self._write = output.msg
        self._min_level = min_level

    def info(self, event: str, **fields: Any) -> None:
        # ``_emit`` written out: both of a signal's lines are info, and a call less counts.
        if self._min_level <= logging.INFO:
            fields["event"] = event  # last, as structlog puts it
            self._write(self._render(None, "info", fields))

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if self._min_level <= level:
            fields["event"] = event
            self._write(self._render(None, method, fields))


class LoopTurnStream:
    """The log's output, and structlog's logger: the lines of one turn of the event loop leave
    in one write.

    A signal logs two lines (its attempt and its outcome). Inside a running event loop a line
    is kept, and the lines kept meanwhile are written together at the loop's next turn; outside
    a loop (commands, threads) a line is written at once, after any still kept. It keeps the
    lines itself, because the stream may have no buffer of its own: with ``PYTHONUNBUFFERED``
    (the image sets it) ``sys.stdout.buffer`` is the raw file, and every ``write`` a system call.
    A line waits at most for the callbacks already due in this turn, never for a timer; a
    process killed in that moment loses those lines, as it would lose a line it had not yet
    written.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # threads log too: no line lost or written twice
        self._kept: list[bytes] = []
        self._due: asyncio.AbstractEventLoop | None = None  # the loop that owes a write

    def msg(self, line: bytes) -> None:
        with self._lock:
            self._kept.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_kept()
            return
        if self._due is not loop:  # (a loop that closed owing one no longer counts)
            self._due = loop
            loop.call_soon(self._write_kept)

    debug = info = warning = warn = error = critical = exception = fatal = failure = msg

    def _write_kept(self) -> None:
        self._due = None
        with self._lock:
            lines, self._kept = self._kept, []
            if lines:  # in the lock: the lines leave in the order they were kept
                self._stream.write(b"".join(lines))
                self._stream.flush()
