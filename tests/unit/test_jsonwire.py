"""JSON to and from the database and the wire: exact integers, never a non-JSON token."""

from __future__ import annotations

import json

import orjson
import pytest

from router_service.adapters.agents import decode_body
from router_service.jsonwire import MAX_WRITABLE_DEPTH, dumps, loads, writable_depth

HUGE = int("9" * 400)  # beyond a double: orjson refuses to read it


@pytest.mark.parametrize(
    "value",
    [
        {"n": HUGE},
        {"n": -(2**64)},
        {"n": 2**64},
        [-(2**63) - 1, 12345678901234567890123],
        {"s": "1111111111111111111111", "n": 1},
        {"x": -0.0, "y": 5e-324, "z": 1.7976931348623157e308},
    ],
)
def test_what_dumps_writes_loads_reads_back_exactly(value: object) -> None:
    back = loads(dumps(value).decode())
    assert back == value
    assert json.dumps(back) == json.dumps(value)  # same types: ints stay ints


@pytest.mark.parametrize("text", ["1e999", "[1, 1e999, " + "1" * 20 + "]", "NaN", "[Infinity]"])
def test_loads_refuses_what_is_not_json_or_not_a_double(text: str) -> None:
    with pytest.raises(ValueError, match=r"infinity|too large|expected|not JSON"):
        loads(text)


def test_dumps_never_writes_infinity_even_beside_a_huge_integer() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        dumps({"n": HUGE, "x": float("inf")})


def test_an_agent_answer_with_a_huge_integer_is_kept_exactly() -> None:
    assert decode_body(b'{"n":' + str(HUGE).encode() + b"}", "application/json") == {"n": HUGE}
    assert decode_body(b'{"n":12345678901234567890123}', "application/json") == {
        "n": 12345678901234567890123
    }


def test_an_agent_answer_beyond_a_double_is_kept_as_text() -> None:
    assert decode_body(b'{"x":1e999}', "application/json") == {"text": '{"x":1e999}'}


@pytest.mark.parametrize("number", [b"1", b"12345678901234567890"])
def test_nesting_too_deep_to_read_is_a_value_error_on_either_parser(number: bytes) -> None:
    # Without a long number orjson reads it (its limit: 1,024 levels); with one, the exact
    # parser, whose limit is Python's recursion limit.
    with pytest.raises(ValueError, match=r"depth|too deeply"):
        loads(b"[" * 5000 + number + b"]" * 5000)


def test_an_agent_answer_as_deep_as_can_be_written_is_kept_and_one_level_more_is_text() -> None:
    deepest = b"[" * MAX_WRITABLE_DEPTH + b"1" + b"]" * MAX_WRITABLE_DEPTH
    kept = decode_body(deepest, "application/json")
    assert dumps(kept) == deepest
    deeper = b"[" + deepest + b"]"
    assert decode_body(deeper, "application/json") == {"text": deeper.decode()}


def test_many_brackets_at_a_small_depth_are_walked_and_writable() -> None:
    wide = b"[" + b",".join([b'{"a":[1]}'] * 400) + b"]"  # 800 brackets, 3 levels
    assert writable_depth(wide, json.loads(wide))
    assert decode_body(wide, "application/json") == json.loads(wide)


@pytest.mark.parametrize("number", ["1", "1234567890123456789"])  # orjson, then the exact parser
def test_a_lone_surrogate_is_a_value_error_on_either_parser(number: str) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        loads('{"t":"\\ud800","n":' + number + "}")


def test_an_agent_answer_with_a_lone_surrogate_and_a_long_number_is_kept_as_text() -> None:
    """The exact parser read the surrogate into the answer; writing it to the log then failed
    (a 500 on Postgres, 503 on SQLite), and the signal was left in flight for the sweeper to
    send again, on every sweep."""
    raw = b'{"t":"\\ud800","n":1234567890123456789}'
    kept = decode_body(raw, "application/json")
    assert kept == {"text": raw.decode()}
    assert orjson.loads(dumps(kept)) == kept  # and it can be written


def test_a_surrogate_pair_beside_a_long_number_is_read_as_its_character() -> None:
    assert loads('{"t":"\\ud83d\\ude00","n":1234567890123456789}') == {
        "t": "\U0001f600",
        "n": 1234567890123456789,
    }
