"""Rows to records and back, the same on both backends: timestamps, cursors, JSON and text
columns.

Shared by the Postgres store (``postgres.py``) and the SQLite store (``sqlite.py``), so that a
record read from either looks the same to the service.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from router_service.domain.errors import ValidationFailed
from router_service.domain.outcome import Status
from router_service.jsonwire import dumps, loads
from router_service.page_work import off_loop
from router_service.service.records import (
    DeadLetterFilter,
    DeadLetterRecord,
    LogRecord,
    Page,
    ReplayAttemptRecord,
    ReplayJobProgress,
    ReplayJobRecord,
    StoredJson,
)

_NUL = b"\\u0000"

Decode = Callable[[Any], Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def json_column(value: Any) -> str:
    """The text of a JSON column: orjson, except that NUL (which JSONB refuses) becomes
    U+FFFD in agent answers."""
    data = dumps(value)
    if _NUL in data:
        data = dumps(_strip_nul(value))
    return data.decode()


def text_column(value: str) -> str:
    """The text of a column an agent's answer can reach (a dead letter's error quotes an A2A
    error message or task id): NUL, which Postgres refuses in text, becomes U+FFFD as it does
    in JSON columns, on both backends, so that the outcome is always storable."""
    return value.replace("\x00", "\ufffd")


def decode_json_text(value: Any) -> Any:
    """A JSON column as Postgres hands it over (text); None stays None."""
    return None if value is None else loads(value)  # exact for integers beyond 64 bits


def already_decoded(value: Any) -> Any:
    return value


def stored_json(value: Any) -> StoredJson | None:
    """A JSON column's text as it is (``StoredJson``), not parsed; None stays None."""
    return None if value is None else StoredJson(value)


R = TypeVar("R")


class BufferedRows(Protocol):
    """A SQLAlchemy result whose rows the driver has fetched (aiosqlite fetches them all)."""

    def mappings(self) -> Any: ...


async def records_off_loop(
    result: BufferedRows,
    make: Callable[[Mapping[Any, Any], Decode, bool], R],
    stored: bool = False,
) -> list[R]:
    """The records of a SQLite result, made on the page thread (``page_work``): SQLAlchemy
    decodes the JSON columns as it builds the rows (those selected as text stay text, for
    ``stored``), and ``make`` the payload."""
    return await off_loop(
        lambda: [make(row, already_decoded, stored) for row in result.mappings().all()]
    )


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this server issued") from exc
    if not isinstance(parts, list) or len(parts) != arity:
        raise ValidationFailed("cursor is not one this server issued")
    return parts


def log_cursor_bound(cursor: str) -> tuple[datetime, str]:
    """The ``(created_at, log_id)`` after which the next page of the log starts."""
    created_iso, last_id = decode_cursor(cursor, 2)
    try:
        created = datetime.fromisoformat(created_iso)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed("cursor is not one this server issued") from exc
    if not isinstance(last_id, str):
        raise ValidationFailed("cursor is not one this server issued")
    return created, last_id


def replay_jobs_cursor_bound(cursor: str | None) -> int:
    """The job id a page of replay jobs (newest first) goes on below; past every id without
    a cursor."""
    return 2**63 - 1 if cursor is None else id_cursor_bound(cursor, lowest=1)


def replay_jobs_page(jobs: list[ReplayJobRecord], limit: int) -> Page[ReplayJobRecord]:
    """``limit`` of the ``limit + 1`` jobs read, and the cursor past them when there are more."""
    shown = jobs[:limit]
    return Page(shown, encode_cursor(shown[-1].id) if len(jobs) > limit else None)


def log_cursor(record: LogRecord) -> str:
    return encode_cursor(as_utc(record.created_at).isoformat(), record.log_id)


def id_cursor_bound(cursor: str, lowest: int = 0) -> int:
    """The row id a cursor of ``encode_cursor(id)`` holds, from ``lowest`` to 2**63 - 1."""
    (bound,) = decode_cursor(cursor, 1)
    if not isinstance(bound, int) or isinstance(bound, bool) or not lowest <= bound < 2**63:
        raise ValidationFailed("cursor is not one this server issued")
    return bound


def log_record(row: Mapping[Any, Any], decode: Decode, stored: bool = False) -> LogRecord:
    """``decode`` turns a JSON column as the driver returns it into Python values. ``stored``:
    the payload, metadata, results and response as stored (``StoredJson``), for a page written
    out as it is; the row then holds those columns as text on both backends."""
    kept = stored_json if stored else decode
    return LogRecord(
        log_id=row["log_id"],
        trace_id=row["trace_id"],
        sender_id=row["sender_id"],
        payload_hash=row["payload_hash"],
        payload=_payload(row["payload"], stored),
        metadata=kept(row["metadata"]),
        signal_ts=aware(row["signal_ts"]) or utcnow(),
        kind=row["kind"],
        rule=row["rule"],
        mode=row["mode"],
        routed_agents=list(decode(row["routed_agents"])),
        status=Status(row["status"]),
        results=kept(row["results"]),
        response=kept(row["response"]),
        latency_ms=row["latency_ms"],
        created_at=aware(row["created_at"]) or utcnow(),
        updated_at=aware(row["updated_at"]) or utcnow(),
        routing_version=row["routing_version"],
    )


def _payload(text: str, stored: bool) -> Any:
    """The payload column is text on both backends: exact for integers beyond 64 bits,
    orjson's speed else; or as stored."""
    return StoredJson(text) if stored else loads(text)


def dead_letter_record(
    row: Mapping[Any, Any], decode: Decode, stored: bool = False
) -> DeadLetterRecord:
    kept = stored_json if stored else decode
    return DeadLetterRecord(
        id=row["id"],
        log_id=row["log_id"],
        agent=row["agent"] or None,
        kind=row["kind"],
        mode=row["mode"],
        payload=_payload(row["payload"], stored),
        error=row["error"],
        attempts=row["attempts"],
        replay_count=row["replay_count"],
        status=row["status"],
        created_at=aware(row["created_at"]) or utcnow(),
        last_attempt_at=aware(row["last_attempt_at"]),
        sender_id=row["sender_id"],
        metadata=kept(row["metadata"]),
        signal_ts=aware(row["signal_ts"]),
        trace_id=row["trace_id"],
        claimed_by=row["claimed_by"],
        claim_expires_at=aware(row["claim_expires_at"]),
    )


def merged_replay(
    entry: DeadLetterRecord,
    stored_response: Any,
    stored_results: list[dict[str, Any]] | None,
    replayed_response: Any,
    replayed_results: list[Any],
) -> tuple[Any, list[Any]]:
    """The signal's response and results after a successful replay of ``entry``: one agent of an
    aggregate fan-out merges its answer into the stored one; a whole-signal replay replaces it."""
    if entry.agent is None:
        return replayed_response, list(replayed_results)
    response = dict(stored_response or {})
    response[entry.agent] = replayed_response
    results = [r for r in stored_results or [] if r.get("agent") != entry.agent]
    results.extend(replayed_results)
    return response, results


def replay_job_record(row: Mapping[Any, Any]) -> ReplayJobRecord:
    return ReplayJobRecord(
        id=row["id"],
        created_by=row["created_by"],
        created_at=aware(row["created_at"]) or utcnow(),
        updated_at=aware(row["updated_at"]) or utcnow(),
        finished_at=aware(row["finished_at"]),
        state=row["state"],
        filter=DeadLetterFilter.from_dict(orjson.loads(row["filter"])),
        rate=row["rate"],
        max_entries=row["max_entries"],
        selected=row["selected"],
        progress=ReplayJobProgress(
            cursor_id=row["cursor_id"],
            replayed=row["replayed"],
            succeeded=row["succeeded"],
            failed=row["failed"],
            exhausted=row["exhausted"],
            deferred=row["deferred"],
        ),
        cancel_requested=bool(row["cancel_requested"]),
        lease_owner=row["lease_owner"],
        lease_expires_at=aware(row["lease_expires_at"]),
        error=row["error"],
    )


def replay_attempt_record(row: Mapping[Any, Any]) -> ReplayAttemptRecord:
    return ReplayAttemptRecord(
        log_id=row["log_id"],
        dead_letter_id=row["dead_letter_id"],
        job_id=row["job_id"],
        agent=row["agent"] or None,
        trace_id=row["trace_id"],
        outcome=row["outcome"],
        error=row["error"],
        created_at=aware(row["created_at"]) or utcnow(),
    )


def filter_column(flt: DeadLetterFilter) -> str:
    """The JSON text of a job's filter (its snapshot bound included)."""
    return dumps(flt.as_dict()).decode()


def replayed_entry(entry: DeadLetterRecord, ok: bool, max_replays: int) -> tuple[str, int]:
    """A dead letter's status and replay count after one more replay that reached its agent."""
    count = entry.replay_count + 1
    if ok:
        return "replayed", count
    return ("exhausted" if count >= max_replays else "pending"), count
