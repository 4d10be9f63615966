"""JSON bytes for the wire and the database, and JSON read back from the database.

orjson is fast but not exact everywhere: it refuses integers beyond 64 bits when writing, turns
them into floats when reading (and refuses those beyond a double). Clients may send any integer
Python can hold (``api/body.py`` bounds the digits), so both directions fall back to the
standard library where orjson would fail or round, and any valid client JSON is echoed exactly.
Its limits on what is read (nesting, strings, arrays) serve a client's body and an agent's answer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from router_service.domain.errors import ValidationFailed
from router_service.domain.safe_regex import compile_searches
from router_service.service.records import StoredJson

# A run of 19 digits may be an integer orjson cannot hold (beyond -2**63 .. 2**64-1). It may
# also sit inside a string: then the exact path is merely a little slower. Looked for with RE2:
# ``re`` took 4.5 ms to scan a 154 kB payload, longer than the standard library's whole parse.
_LONG_DIGITS = compile_searches(r"[0-9]{19}").test
# A lone UTF-16 surrogate can only come as an escape (UTF-8 cannot encode one); orjson refuses it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def dumps(value: Any) -> bytes:
    """JSON bytes; a ``StoredJson`` inside goes out as it was stored, not parsed again."""
    try:
        return orjson.dumps(value, default=_as_stored)
    except TypeError:
        # allow_nan=False: never write Infinity/NaN, which are not JSON.
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_parsed
        )
        return text.encode()


def _as_stored(value: Any) -> Any:
    if type(value) is StoredJson:
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _parsed(value: Any) -> Any:
    """The standard library cannot write a text as it is: it writes what the text holds."""
    if type(value) is StoredJson:
        return loads(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


# orjson writes no deeper than this; past it ``dumps`` falls back to the standard library, whose
# depth is Python's recursion limit (about 1,000, less what the caller's stack already holds).
MAX_WRITABLE_DEPTH = 255


def writable_depth(raw: bytes, value: Any) -> bool:
    """Whether ``value`` (parsed from ``raw``) nests no deeper than ``MAX_WRITABLE_DEPTH``: what
    is read from outside (an agent's answer) must be writable again (to the log, to the
    client)."""
    if within_limits_by_size(raw, MAX_WRITABLE_DEPTH):
        return True
    try:
        check_depth(value, MAX_WRITABLE_DEPTH)
    except ValidationFailed:
        return False
    return True


def check_depth(
    value: Any, max_depth: int, max_string_chars: int = 0, max_array_items: int = 0
) -> None:
    """Nesting, string and array limits (0: unchecked); level by level, so hostile nesting
    cannot exhaust the stack, and a level's containers are gathered by one comprehension (a
    body of 87,000 empty arrays took 58 ms walked one container at a time)."""
    # Depth counts containers: {"a": 1} is 1 level, {"a": [1]} is 2.
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise ValidationFailed(f"JSON nesting deeper than {max_depth} levels")
        if max_array_items and any(
            type(node) is list and len(node) > max_array_items for node in level
        ):
            raise ValidationFailed(f"a JSON array has more than {max_array_items} items")
        children = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
        if max_string_chars:
            _check_strings(level, max_string_chars)
        level = children


def _check_strings(level: list[Any], max_string_chars: int) -> None:
    for node in level:
        strings = [*node.keys(), *node.values()] if type(node) is dict else node
        for item in strings:
            if type(item) is str and len(item) > max_string_chars:
                raise ValidationFailed(f"a JSON string is longer than {max_string_chars}")


def within_limits_by_size(
    raw: bytes, max_depth: int, max_string_chars: int = 0, max_array_items: int = 0
) -> bool:
    """True when the body's bytes alone prove that ``check_depth`` would pass: each level of
    nesting needs a ``[`` or ``{``, an array of n items n - 1 commas, a string of n characters
    at least n bytes (brackets and commas inside strings count too, so this errs only towards
    walking). A few C-speed counts instead of a walk of every value, for most bodies."""
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        return False
    if max_string_chars and len(raw) > max_string_chars:
        return False
    return not max_array_items or raw.count(b",") < max_array_items


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]} is too large for a double")
    return value


def loads(text: str | bytes) -> Any:
    """Strict JSON, with integers exact however long (a ``ValueError`` for what is not JSON,
    for a number beyond a double, an integer past Python's digit limit, or nesting too deep
    to read)."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError too
    if not _LONG_DIGITS(text):
        return orjson.loads(text)  # its own depth limit raises a ValueError
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_not_json)
        # The standard library reads an escaped lone surrogate into the string, where nothing
        # can write it as UTF-8 again (the log, the client's answer): refused, as orjson does.
        if holds_lone_surrogate(text, value):
            raise ValueError("JSON holds a lone UTF-16 surrogate")
    except RecursionError as exc:  # the exact parser's depth is Python's recursion limit
        raise ValueError("JSON nested too deeply to read") from exc
    return value


def holds_lone_surrogate(text: str, value: Any) -> bool:
    """Whether ``value``, parsed from ``text``, holds a lone UTF-16 surrogate (read from an
    escape such as ``\\ud800``), which UTF-8 cannot encode. Only a text with such an escape
    is checked further."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
