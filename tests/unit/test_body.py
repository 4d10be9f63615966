"""Strict JSON bodies and the RouteRequest schema: what is refused, with which error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router_service.api.body import parse_json, validate
from router_service.api.schemas import RouteRequest
from router_service.domain.errors import InvalidJson, ValidationFailed
from router_service.domain.routing import Mode
from router_service.jsonwire import check_depth, within_limits_by_size

VALID: dict[str, Any] = {"sender_id": "sender-1", "payload": {"text": "hello"}}


def _nested_lists(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _nested_dicts(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


# --- parse_json --------------------------------------------------------------------------------


def test_parse_json_returns_the_decoded_value() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"{'a': 1}", b'{"a": 1,}', b'{"a": 1} trailing', b"undefined"],
    ids=["empty", "unclosed", "single-quotes", "trailing-comma", "trailing-garbage", "word"],
)
def test_parse_json_rejects_invalid_json(raw: bytes) -> None:
    with pytest.raises(InvalidJson, match="not valid JSON"):
        parse_json(raw)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_parse_json_rejects_non_finite_constants(constant: bytes) -> None:
    with pytest.raises(InvalidJson, match="not valid JSON"):
        parse_json(b'{"x": ' + constant + b"}")


@pytest.mark.parametrize(
    "raw",
    [b'{"a": 1, "a": 2}', b'{"p": {"b": 1, "b": 1}}', b'[{"ok": 1}, {"c": 1, "c": 2}]'],
    ids=["top-level", "nested-object", "object-in-array"],
)
def test_parse_json_rejects_duplicate_keys(raw: bytes) -> None:
    with pytest.raises(InvalidJson, match="duplicate object key"):
        parse_json(raw)


def test_parse_json_names_a_byte_order_mark_as_json_loads_does() -> None:
    with pytest.raises(InvalidJson, match="Unexpected UTF-8 BOM"):
        parse_json(b'\xef\xbb\xbf{"a": 1}')


def test_parse_json_rejects_bytes_that_are_not_utf8() -> None:
    with pytest.raises(InvalidJson, match="not UTF-8"):
        parse_json(b'{"s": "caf\xe9"}')


@pytest.mark.parametrize(
    "raw",
    [b'{"s": "\\ud800"}', b'{"s": "\\udc00 tail"}', b'{"\\uDBFF": 1}', b'["\\ude00\\ud83d"]'],
    ids=["lone-high", "lone-low", "lone-in-key", "reversed-pair"],
)
def test_parse_json_rejects_lone_surrogate_escapes(raw: bytes) -> None:
    with pytest.raises(InvalidJson, match="surrogate"):
        parse_json(raw)


def test_parse_json_accepts_a_valid_surrogate_pair() -> None:
    assert parse_json(b'{"s": "\\ud83d\\ude00"}') == {"s": "\U0001f600"}


def test_parse_json_accepts_an_escaped_backslash_before_text_like_a_surrogate() -> None:
    assert parse_json(b'{"s": "\\\\ud800"}') == {"s": "\\ud800"}


def test_parse_json_of_a_100000_deep_array_fails_validation_instead_of_crashing() -> None:
    with pytest.raises(ValidationFailed, match="too deep"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


# --- check_depth -------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [_nested_lists, _nested_dicts], ids=["lists", "objects"])
def test_depth_exactly_at_the_limit_passes(build: Any) -> None:
    check_depth(build(32), 32)


@pytest.mark.parametrize("build", [_nested_lists, _nested_dicts], ids=["lists", "objects"])
def test_depth_one_over_the_limit_fails_validation(build: Any) -> None:
    with pytest.raises(ValidationFailed, match="deeper than 32 levels"):
        check_depth(build(33), 32)


def test_depth_limit_applies_to_any_branch_not_just_the_first() -> None:
    value = {"shallow": 1, "deep": [_nested_lists(5)]}
    check_depth(value, 7)
    with pytest.raises(ValidationFailed):
        check_depth(value, 6)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(
    value=JSON_VALUES,
    ensure_ascii=st.booleans(),
    max_depth=st.integers(1, 8),
    max_string_chars=st.just(0) | st.integers(1, 200),
    max_array_items=st.integers(0, 8),
)
def test_a_body_whose_bytes_prove_it_within_the_limits_passes_the_walk_too(
    value: Any, ensure_ascii: bool, max_depth: int, max_string_chars: int, max_array_items: int
) -> None:
    raw = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    if within_limits_by_size(raw, max_depth, max_string_chars, max_array_items):
        check_depth(value, max_depth, max_string_chars, max_array_items)


def test_the_bytes_prove_nothing_once_a_limit_could_be_crossed() -> None:
    assert within_limits_by_size(json.dumps(_nested_lists(32)).encode(), 32)
    assert not within_limits_by_size(json.dumps(_nested_lists(33)).encode(), 32)
    assert not within_limits_by_size(b'{"a": "[[["}', 3)  # a bracket in a string counts
    assert within_limits_by_size(b"[1, 2, 3]", 1, max_array_items=3)
    assert not within_limits_by_size(b"[1, 2, 3, 4]", 1, max_array_items=3)
    assert within_limits_by_size(b'["abcd"]', 1, max_string_chars=8)
    assert not within_limits_by_size(b'["abcdefgh"]', 1, max_string_chars=8)


def test_check_depth_of_a_100000_deep_structure_fails_without_recursion() -> None:
    with pytest.raises(ValidationFailed):
        check_depth(_nested_lists(100_000), 32)


# --- validate(RouteRequest, ...) ---------------------------------------------------------------


def _route(**changes: Any) -> dict[str, Any]:
    body = dict(VALID)
    body.update(changes)
    return body


def test_minimal_route_request_is_valid_with_defaults() -> None:
    request = validate(RouteRequest, VALID)
    assert request.sender_id == "sender-1"
    assert request.payload == {"text": "hello"}
    assert request.log_id is None
    assert request.timestamp is None
    assert request.metadata is None
    assert request.mode is None


@pytest.mark.parametrize("body", [[VALID], "text", None, 3], ids=["list", "str", "null", "int"])
def test_body_that_is_not_an_object_fails_validation(body: Any) -> None:
    with pytest.raises(ValidationFailed, match="body must be a JSON object"):
        validate(RouteRequest, body)


def test_unknown_top_level_field_fails_validation_naming_it() -> None:
    with pytest.raises(ValidationFailed, match="surprise"):
        validate(RouteRequest, _route(surprise=1))


@pytest.mark.parametrize(
    "sender_id",
    ["", "x" * 257, 42, None, ["s"], "bad\x00id"],
    ids=["empty", "257-chars", "int", "null", "list", "nul-byte"],
)
def test_bad_sender_id_fails_validation_naming_the_field(sender_id: Any) -> None:
    with pytest.raises(ValidationFailed, match="sender_id"):
        validate(RouteRequest, _route(sender_id=sender_id))


def test_sender_id_of_256_chars_is_valid() -> None:
    assert validate(RouteRequest, _route(sender_id="x" * 256)).sender_id == "x" * 256


def test_missing_sender_id_fails_validation_naming_the_field() -> None:
    with pytest.raises(ValidationFailed, match="sender_id"):
        validate(RouteRequest, {"payload": {}})


@pytest.mark.parametrize("payload", [[1, 2], "text", 7, None], ids=["list", "str", "int", "null"])
def test_payload_that_is_not_an_object_fails_validation_naming_the_field(payload: Any) -> None:
    with pytest.raises(ValidationFailed, match="payload"):
        validate(RouteRequest, _route(payload=payload))


def test_log_id_of_128_chars_is_valid() -> None:
    assert validate(RouteRequest, _route(log_id="a" * 128)).log_id == "a" * 128


@pytest.mark.parametrize(
    "log_id", ["a" * 129, "", 12, "a\x00b"], ids=["129-chars", "empty", "int", "nul-byte"]
)
def test_bad_log_id_fails_validation_naming_the_field(log_id: Any) -> None:
    with pytest.raises(ValidationFailed, match="log_id"):
        validate(RouteRequest, _route(log_id=log_id))


@pytest.mark.parametrize(
    "timestamp",
    ["2024-05-01T12:00:00", "not a date", "2024-05-01", "2024-13-01T00:00:00Z", 1714564800],
    ids=["no-offset", "not-a-date", "date-only", "month-13", "epoch-number"],
)
def test_bad_timestamp_fails_validation_naming_the_field(timestamp: Any) -> None:
    with pytest.raises(ValidationFailed, match="timestamp"):
        validate(RouteRequest, _route(timestamp=timestamp))


@pytest.mark.parametrize(
    "timestamp",
    ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123456Z", "2024-05-01T14:00:00+02:00"],
)
def test_timestamp_with_an_offset_is_valid(timestamp: str) -> None:
    assert validate(RouteRequest, _route(timestamp=timestamp)).timestamp == timestamp


@pytest.mark.parametrize("mode", ["first_success", "fallback", "aggregate"])
def test_each_known_mode_is_accepted(mode: str) -> None:
    assert validate(RouteRequest, _route(mode=mode)).mode is Mode(mode)


@pytest.mark.parametrize("mode", ["round_robin", "AGGREGATE", "", 1])
def test_unknown_mode_fails_validation_naming_the_field(mode: Any) -> None:
    with pytest.raises(ValidationFailed, match="mode"):
        validate(RouteRequest, _route(mode=mode))


def test_metadata_must_be_an_object() -> None:
    assert validate(RouteRequest, _route(metadata={"m": 1})).metadata == {"m": 1}
    with pytest.raises(ValidationFailed, match="metadata"):
        validate(RouteRequest, _route(metadata=[1]))


def test_validation_message_counts_further_errors() -> None:
    with pytest.raises(ValidationFailed, match=r"\(and 1 more\)"):
        validate(RouteRequest, {"sender_id": "", "payload": []})


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"1.8e308", b"123456789e305", b"0.1e310"])
def test_a_number_beyond_a_double_fails_validation_naming_it(number: bytes) -> None:
    with pytest.raises(ValidationFailed, match="too large for a double") as caught:
        parse_json(b'{"x":' + number + b"}")
    assert number.decode()[:20] in caught.value.message


@pytest.mark.parametrize("digits", [4301, 5000, 100_000])
def test_an_integer_past_the_digit_limit_fails_validation_naming_the_limit(digits: int) -> None:
    with pytest.raises(ValidationFailed, match=f"has {digits} digits; at most 4300"):
        parse_json(b'{"x":-' + b"9" * digits + b"}")


def test_an_integer_of_4300_digits_is_kept_exactly() -> None:
    assert parse_json(b"[" + b"7" * 4300 + b"]") == [int("7" * 4300)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"-0", 0), (b"-0.0", -0.0), (b"1e-400", 0.0), (b"5e-324", 5e-324), (b"2.2e-308", 2.2e-308)],
)
def test_small_and_signed_zero_numbers_are_accepted(raw: bytes, expected: float) -> None:
    value = parse_json(b'{"x":' + raw + b"}")["x"]
    assert value == expected
    assert str(value).startswith("-") == str(expected).startswith("-")
