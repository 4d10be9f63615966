"""JSON logs, one object per line on stdout, each with the request's ``trace_id``."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

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
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "router") -> Any:
    return structlog.get_logger(name)
