"""Signal creation: the documented log_id recipe, timestamp normalisation, canonical JSON."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router_service.domain.signal import Signal, canonical_json

MOMENT = datetime(2024, 5, 1, 12, 34, 56, 789012, tzinfo=UTC)


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _recipe_canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _recipe_log_id(sender_id: str, utc_z_timestamp: str, payload: dict[str, Any]) -> str:
    """The recipe from the module docstring, written out independently of the module."""
    payload_hash = _sha256_hex(_recipe_canonical(payload))
    return _sha256_hex(_recipe_canonical([sender_id, utc_z_timestamp, payload_hash]))


def test_log_id_follows_the_documented_recipe() -> None:
    # Unsorted keys, nesting and non-ASCII text exercise every clause of the recipe.
    payload = {"zeta": [1, 2.5, None], "alpha": {"b": "café ☕", "a": True}}
    signal = Signal.create(sender_id="sender-é", payload=payload, timestamp=MOMENT)

    expected_payload_json = '{"alpha":{"a":true,"b":"café ☕"},"zeta":[1,2.5,null]}'
    assert signal.payload_json == expected_payload_json
    assert signal.payload_hash == _sha256_hex(expected_payload_json)
    assert signal.log_id == _recipe_log_id("sender-é", "2024-05-01T12:34:56.789012Z", payload)


def test_log_id_is_64_lowercase_hex() -> None:
    signal = Signal.create(sender_id="s", payload={}, timestamp=MOMENT)
    assert len(signal.log_id) == 64
    assert set(signal.log_id) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "spelling",
    [
        "2024-05-01T12:34:56.789012Z",
        "2024-05-01T12:34:56.789012+00:00",
        "2024-05-01T14:34:56.789012+02:00",
        "2024-05-01T07:04:56.789012-05:30",
    ],
)
def test_same_instant_in_any_offset_gives_the_same_log_id(spelling: str) -> None:
    reference = Signal.create(sender_id="s", payload={"k": 1}, timestamp=MOMENT)
    signal = Signal.create(
        sender_id="s", payload={"k": 1}, timestamp=datetime.fromisoformat(spelling)
    )
    assert signal.log_id == reference.log_id
    assert signal.timestamp == MOMENT
    assert signal.timestamp.utcoffset() == timedelta(0)


def test_timestamps_one_microsecond_apart_give_different_log_ids() -> None:
    first = Signal.create(sender_id="s", payload={"k": 1}, timestamp=MOMENT)
    second = Signal.create(
        sender_id="s", payload={"k": 1}, timestamp=MOMENT + timedelta(microseconds=1)
    )
    assert first.log_id != second.log_id
    assert second.log_id == _recipe_log_id("s", "2024-05-01T12:34:56.789013Z", {"k": 1})


def test_different_sender_or_payload_gives_a_different_log_id() -> None:
    base = Signal.create(sender_id="s", payload={"k": 1}, timestamp=MOMENT)
    other_sender = Signal.create(sender_id="t", payload={"k": 1}, timestamp=MOMENT)
    other_payload = Signal.create(sender_id="s", payload={"k": 2}, timestamp=MOMENT)
    assert len({base.log_id, other_sender.log_id, other_payload.log_id}) == 3


def test_payload_key_order_does_not_change_payload_hash_or_log_id() -> None:
    one = Signal.create(
        sender_id="s", payload={"a": 1, "b": {"x": 1, "y": [1, 2]}}, timestamp=MOMENT
    )
    two = Signal.create(
        sender_id="s", payload={"b": {"y": [1, 2], "x": 1}, "a": 1}, timestamp=MOMENT
    )
    assert one.payload_json == two.payload_json
    assert one.payload_hash == two.payload_hash
    assert one.log_id == two.log_id


def test_list_order_in_payload_does_change_payload_hash() -> None:
    one = Signal.create(sender_id="s", payload={"a": [1, 2]}, timestamp=MOMENT)
    two = Signal.create(sender_id="s", payload={"a": [2, 1]}, timestamp=MOMENT)
    assert one.payload_hash != two.payload_hash


def test_explicit_log_id_is_kept_instead_of_derived() -> None:
    signal = Signal.create(
        sender_id="s", payload={"k": 1}, timestamp=MOMENT, log_id="client-chosen-id"
    )
    assert signal.log_id == "client-chosen-id"
    assert signal.payload_hash == _sha256_hex('{"k":1}')


def test_metadata_defaults_to_an_empty_dict() -> None:
    signal = Signal.create(sender_id="s", payload={}, timestamp=MOMENT)
    assert signal.metadata == {}


@pytest.mark.parametrize(
    "value",
    [float("nan"), {"x": float("nan")}, [float("inf")], {"y": float("-inf")}],
    ids=["nan", "nested-nan", "inf", "minus-inf"],
)
def test_canonical_json_rejects_nan_and_infinity(value: Any) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json(value)


def test_signal_create_rejects_nan_in_payload() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        Signal.create(sender_id="s", payload={"x": float("nan")}, timestamp=MOMENT)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=25,
)


def _shuffle_keys(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffle_keys(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffle_keys(v, rng) for v in value]
    return value


@given(
    payload=st.dictionaries(st.text(max_size=6), json_values, max_size=8),
    rng=st.randoms(use_true_random=False),
)
def test_payload_hash_is_invariant_under_key_permutation(
    payload: dict[str, Any], rng: random.Random
) -> None:
    shuffled = _shuffle_keys(payload, rng)
    assert shuffled == payload
    one = Signal.create(sender_id="s", payload=payload, timestamp=MOMENT)
    two = Signal.create(sender_id="s", payload=shuffled, timestamp=MOMENT)
    assert one.payload_hash == two.payload_hash
    assert one.log_id == two.log_id


@given(sender_id=st.text(), payload=st.dictionaries(st.text(max_size=6), json_values, max_size=8))
def test_any_sender_and_payload_give_the_recipes_log_id(
    sender_id: str, payload: dict[str, Any]
) -> None:
    """The recipe through json.dumps, against the module's cached encoder and its spelled-out
    three-string list: quotes, backslashes, control and non-ASCII characters alike."""
    signal = Signal.create(sender_id=sender_id, payload=payload, timestamp=MOMENT)
    assert signal.payload_json == _recipe_canonical(payload)
    assert signal.log_id == _recipe_log_id(sender_id, "2024-05-01T12:34:56.789012Z", payload)
