"""Pure helpers of the agent client: Retry-After parsing and response body decoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from router_service.adapters.agents import decode_body, parse_retry_after


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0)])
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_http_date_in_the_future_is_seconds_until_then() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = parse_retry_after(header)
    assert seconds is not None
    # The header has whole-second resolution; leave slack for a slow machine, not for a bug.
    assert 110.0 <= seconds <= 120.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_retry_after_http_date_with_numeric_offset_is_understood() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    header = format_datetime(future.replace(tzinfo=None))  # naive UTC is spelled "-0000"
    assert header.endswith(" -0000")
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 3500.0 <= seconds <= 3600.0


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "1.5", "-1", "Wed, 32 Oct 2015 07:28:00 GMT"],
    ids=["absent", "empty", "word", "fraction", "negative", "impossible-date"],
)
def test_retry_after_that_is_absent_or_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 01 Jan 99999999999 00:00:00 GMT",
        "Mon, 01 Jan 2026 00:00:00 +99999999999999999999",
        "Mon, 99999999999999999999 Jan 2026 00:00:00 GMT",
        "Mon, 01 Jan 2026 99999999999999999999:00:00 GMT",
        "Mon, 01 Jan 2026 00:00:99999999999 GMT",
    ],
    ids=["year", "zone", "day", "hour", "second"],
)
def test_retry_after_date_whose_numbers_overflow_is_none_not_an_error(value: str) -> None:
    # The date parser raises OverflowError on these: an unreadable header is no header.
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b"[1, 2]", "application/problem+json; charset=utf-8", [1, 2]),
        (b"42", "application/json", 42),
        (b'{"sniffed": true}', "text/plain", {"sniffed": True}),
        (b"[3]", "", [3]),
    ],
    ids=["json", "structured-json", "json-scalar", "object-sniffed", "array-sniffed"],
)
def test_decode_body_parses_json(raw: bytes, content_type: str, expected: object) -> None:
    assert decode_body(raw, content_type) == expected


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (b"hello", "text/plain", {"text": "hello"}),
        (b"42", "text/plain", {"text": "42"}),
        (b"{not json", "application/json", {"text": "{not json"}),
        (b"oops", "application/json", {"text": "oops"}),
        (b"caf\xff", "text/plain", {"text": "caf\ufffd"}),
    ],
    ids=["text", "number-as-text", "broken-json", "json-type-but-text", "invalid-utf8"],
)
def test_decode_body_keeps_non_json_as_text(
    raw: bytes, content_type: str, expected: object
) -> None:
    assert decode_body(raw, content_type) == expected


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_decode_body_of_empty_body_is_none(content_type: str) -> None:
    assert decode_body(b"", content_type) is None
