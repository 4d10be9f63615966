"""API key ring: parsing API_KEY / API_KEYS, authentication, and no plaintext kept."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pydantic import SecretStr

from router_service.api.auth import ApiKey, KeyRing
from router_service.domain.errors import AuthError, ConfigError

PLAINTEXT = "plaintext-KEY-7f3a9c"


def test_single_api_key_authenticates_as_default() -> None:
    ring = KeyRing.from_settings(SecretStr(PLAINTEXT), None)
    assert ring.authenticate(PLAINTEXT).name == "default"


def test_api_keys_accepts_named_pairs_and_bare_keys() -> None:
    ring = KeyRing.from_settings(None, SecretStr(" alice:k-alice , bob:k-bob,bare-key ,"))
    assert ring.authenticate("k-alice").name == "alice"
    assert ring.authenticate("k-bob").name == "bob"
    assert ring.authenticate("bare-key").name == "key3"


def test_named_key_may_contain_colons_after_the_name() -> None:
    ring = KeyRing.from_settings(None, SecretStr("svc:abc:def"))
    assert ring.authenticate("abc:def").name == "svc"


def test_api_key_and_api_keys_are_both_accepted_together() -> None:
    ring = KeyRing.from_settings(SecretStr("main-key"), SecretStr("ops:ops-key"))
    assert ring.authenticate("main-key").name == "default"
    assert ring.authenticate("ops-key").name == "ops"


@pytest.mark.parametrize(
    ("api_key", "api_keys"),
    [(None, None), (SecretStr(""), None), (None, SecretStr("")), (None, SecretStr(" , ,"))],
    ids=["both-unset", "empty-api-key", "empty-api-keys", "only-separators"],
)
def test_no_configured_key_is_a_config_error_naming_api_key(
    api_key: SecretStr | None, api_keys: SecretStr | None
) -> None:
    with pytest.raises(ConfigError, match="API_KEY"):
        KeyRing.from_settings(api_key, api_keys)


def test_named_entry_with_empty_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'bob'"):
        KeyRing.from_settings(None, SecretStr("alice:a,bob:"))


@pytest.mark.parametrize(
    "presented",
    ["wrong", PLAINTEXT[:-1], PLAINTEXT + "x", PLAINTEXT.upper(), "default"],
    ids=["wrong", "prefix", "longer", "other-case", "key-name"],
)
def test_wrong_key_is_refused(presented: str) -> None:
    ring = KeyRing.from_settings(SecretStr(PLAINTEXT), None)
    with pytest.raises(AuthError, match="invalid API key"):
        ring.authenticate(presented)


@pytest.mark.parametrize("presented", [None, ""], ids=["none", "empty"])
def test_missing_key_is_refused(presented: str | None) -> None:
    ring = KeyRing.from_settings(SecretStr(PLAINTEXT), None)
    with pytest.raises(AuthError, match="missing"):
        ring.authenticate(presented)


def _everything_reachable(value: Any, seen: set[int] | None = None) -> list[Any]:
    """Every attribute value reachable from ``value`` through __dict__, slots and containers."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    found = [value]
    children: list[Any] = []
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        children = list(value)
    elif not isinstance(value, str | bytes | int | float | bool | type(None)):
        children = list(getattr(value, "__dict__", {}).values())
        for cls in type(value).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(value, slot):
                    children.append(getattr(value, slot))
    for child in children:
        found.extend(_everything_reachable(child, seen))
    return found


def test_key_ring_keeps_no_plaintext_key() -> None:
    ring = KeyRing.from_settings(SecretStr(PLAINTEXT), SecretStr(f"named:{PLAINTEXT}-2"))
    ring.authenticate(PLAINTEXT)  # nor does it keep what a client presented
    with pytest.raises(AuthError):
        ring.authenticate(PLAINTEXT + "-wrong")
    reachable = _everything_reachable(ring)
    api_keys = [v for v in reachable if isinstance(v, ApiKey)]
    assert len(api_keys) == 2  # the walk really reached the stored keys
    for value in reachable:
        assert not isinstance(value, SecretStr)
        if isinstance(value, str):
            assert PLAINTEXT not in value
        if isinstance(value, bytes):
            assert PLAINTEXT.encode() not in value
    assert PLAINTEXT not in repr(ring)
    assert PLAINTEXT not in repr(vars(ring))


def test_api_key_holds_only_a_name_the_sha256_digest_and_scopes() -> None:
    ring = KeyRing.from_settings(SecretStr(PLAINTEXT), None)
    key = ring.authenticate(PLAINTEXT)
    assert not hasattr(key, "__dict__")
    assert set(ApiKey.__slots__) == {"name", "digest", "scopes"}
    assert key.digest == hashlib.sha256(PLAINTEXT.encode()).digest()
    assert PLAINTEXT not in repr(key)
