"""Signals, canonical JSON and the deterministic ``log_id``.

The recipe (clients can compute it themselves)::

    canonical(x)  = JSON of x with sorted keys, separators "," and ":", UTF-8, no ASCII escaping
    payload_hash  = sha256_hex(canonical(payload))
    ts            = timestamp in UTC as "YYYY-MM-DDTHH:MM:SS.ffffffZ"
    log_id        = sha256_hex(canonical([sender_id, ts, payload_hash]))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# What json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False) would build on every call (it makes a new encoder when given options).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_JSON_STRING = json.encoder.encode_basestring  # the encoder's own spelling of a string


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value`` that hashes and storage agree on."""
    return _CANONICAL.encode(value)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def format_timestamp(moment: datetime) -> str:
    """UTC with microseconds and a ``Z``: ``Z`` and ``+00:00`` spell the same instant."""
    # isoformat pads the year to four digits, as the recipe says (strftime's %Y does not pad
    # years below 1000 on glibc), and is several times cheaper (this runs on every signal).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def derive_log_id(sender_id: str, timestamp: datetime, payload_hash: str) -> str:
    # canonical_json([sender_id, ts, payload_hash]), spelled out: a list of three strings.
    parts = (sender_id, format_timestamp(timestamp), payload_hash)
    return sha256_hex("[" + ",".join(map(_JSON_STRING, parts)) + "]")


@dataclass(frozen=True, slots=True)
class Signal:
    """A validated signal. ``payload_json`` is the canonical JSON stored in the log."""

    log_id: str
    sender_id: str
    payload: dict[str, Any]
    payload_json: str
    payload_hash: str
    timestamp: datetime
    metadata: dict[str, Any]

    @classmethod
    def create(
        cls,
        *,
        sender_id: str,
        payload: dict[str, Any],
        timestamp: datetime,
        metadata: dict[str, Any] | None = None,
        log_id: str | None = None,
    ) -> Signal:
        payload_json = canonical_json(payload)
        payload_hash = sha256_hex(payload_json)
        return cls(
            log_id=log_id or derive_log_id(sender_id, timestamp, payload_hash),
            sender_id=sender_id,
            payload=payload,
            payload_json=payload_json,
            payload_hash=payload_hash,
            timestamp=timestamp.astimezone(UTC),
            metadata=metadata or {},
        )
