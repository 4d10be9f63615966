"""Records shaped for the pages: pretty JSON, times, the re-send command, filter parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from router_service.api.schemas import utc_bound
from router_service.domain.errors import ValidationFailed
from router_service.service.records import LogRecord

LOG_STATUSES = ("in_progress", "delivered", "partial", "dead_lettered")
DLQ_STATUSES = ("pending", "replayed", "exhausted", "all")


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def when(moment: datetime | float | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, float | int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def path_part(text: str) -> str:
    return quote(text, safe="")


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def resend_command(record: LogRecord, base_url: str) -> str:
    """A curl that sends the same signal again (same ``log_id``: the router answers the stored
    outcome unless the entry was pruned). The key stays in the operator's environment."""
    body: dict[str, Any] = {
        "sender_id": record.sender_id,
        "log_id": record.log_id,
        "timestamp": record.signal_ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload": record.payload,
    }
    if record.metadata:
        body["metadata"] = record.metadata
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return (
        f"curl -sS -X POST {_shell_quote(base_url.rstrip('/') + '/route')} "
        "-H 'Content-Type: application/json' "
        '-H "X-API-Key: $ROUTER_API_KEY" '
        f"--data-binary {_shell_quote(data)}"
    )


def optional(text: str | None) -> str | None:
    """A form field left empty means no filter."""
    if text is None:
        return None
    text = text.strip()
    return text or None


def one_of(text: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    value = optional(text)
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name}: expected one of {', '.join(allowed)}")
    return value


def moment(text: str | None, name: str) -> datetime | None:
    """RFC 3339, or a browser's ``datetime-local`` value (taken as UTC)."""
    value = optional(text)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailed(f"{name}: not a date and time: {value[:40]!r}") from exc
    return utc_bound(parsed, name)


def local_input(moment: datetime | None) -> str:
    """A filter's value as a ``datetime-local`` input shows it (UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if moment else ""
