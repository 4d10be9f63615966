"""JSON bytes for the wire and the database: orjson, falling back to the standard library for
what orjson refuses (integers beyond 64 bits), so any valid client JSON can be echoed back."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
