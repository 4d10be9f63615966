"""API key ring: parsing API_KEY / API_KEYS, authentication, and no plaintext kept."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from router_service.api.auth import ApiKey, FailureLimiter, KeyRing, client_address
from router_service.config.settings import Settings, parse_trusted_proxies
from router_service.domain.errors import AuthError, ConfigError, TooManyAuthFailures

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


def test_api_key_holds_only_a_name_the_sha256_digest_scopes_and_senders() -> None:
    ring = KeyRing.from_settings(SecretStr(PLAINTEXT), None)
    key = ring.authenticate(PLAINTEXT)
    assert not hasattr(key, "__dict__")
    assert set(ApiKey.__slots__) == {"name", "digest", "scopes", "senders"}
    assert key.digest == hashlib.sha256(PLAINTEXT.encode()).digest()
    assert PLAINTEXT not in repr(key)


def test_a_file_key_may_be_bound_to_exact_senders_and_prefixes(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n"
        "  - {name: shop, key: k-shop, senders: [shop, 'shop-eu-*']}\n"
        "  - {name: any, key: k-any}\n"
    )
    ring = KeyRing.from_settings(SecretStr("k-env"), None, keys)
    shop = ring.authenticate("k-shop")
    assert [shop.may_send_as(s) for s in ("shop", "shop-eu-1", "shop-eu-", "shop-us", "sho")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert ring.authenticate("k-any").may_send_as("anyone")
    assert ring.authenticate("k-env").senders is None  # API_KEY: every sender


@pytest.mark.parametrize(
    ("senders", "message"),
    [
        ("shop", "'senders' must be a non-empty list"),
        ("[]", "'senders' must be a non-empty list"),
        ("[shop, 3]", "'senders' must be a non-empty list"),
        ("['']", "'senders' must be a non-empty list"),
        ("['*-eu']", "'*' may only end a sender pattern (a prefix), not '*-eu'"),
    ],
)
def test_a_bad_senders_list_is_a_config_error_naming_the_key(
    tmp_path: Path, senders: str, message: str
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - {{name: shop, key: k, senders: {senders}}}\n")
    with pytest.raises(ConfigError) as raised:
        KeyRing.from_settings(None, None, keys)
    assert "keys[0]" in str(raised.value)
    assert message in str(raised.value)


# --------------------------------------------------------------------------- failure limit


def test_failure_limiter_refuses_only_once_over_the_limit_and_forgets_after_the_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(2, window_s=60, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    with pytest.raises(TooManyAuthFailures):
        limiter.failed("a")
    limiter.failed("b")  # another address has its own count
    now[0] = 61.0
    limiter.failed("a")


def test_failures_from_one_ipv6_64_share_one_count() -> None:
    limiter = FailureLimiter(2, window_s=60)
    limiter.failed("2001:db8:0:1::a")
    limiter.failed("2001:db8:0:1:ffff::b")  # another address of the same /64
    with pytest.raises(TooManyAuthFailures):
        limiter.failed("2001:db8:0:1::c")
    limiter.failed("2001:db8:0:2::a")  # the next /64 is another client


def test_an_ipv4_address_written_as_ipv6_is_counted_as_itself() -> None:
    limiter = FailureLimiter(1, window_s=60)
    limiter.failed("::ffff:192.0.2.1")
    with pytest.raises(TooManyAuthFailures):
        limiter.failed("192.0.2.1")
    limiter.failed("192.0.2.2")
    limiter.failed("unknown")  # no address at all: counted under its own name


def test_failure_limiter_has_no_check_a_valid_request_could_be_refused_by() -> None:
    # The limiter is consulted only after a failed authentication: nothing to call before it.
    assert not hasattr(FailureLimiter, "check")


PROXIES = parse_trusted_proxies("10.0.0.0/8, 192.168.1.1, ::1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.1.2.3", None, "10.1.2.3"),
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1, 192.168.1.1", "198.51.100.1"),  # forged left part
        ("::1", "2001:db8::5", "2001:db8::5"),
        ("10.1.2.3", "10.9.9.9, 192.168.1.1", "10.1.2.3"),  # only proxies: the peer
        ("10.1.2.3", "not-an-ip", "10.1.2.3"),
        ("10.1.2.3", " , ", "10.1.2.3"),
    ],
)
def test_client_address_honours_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: str | None, expected: str
) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_forwarded_for_is_ignored() -> None:
    assert client_address("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "example.com", "1.2.3"])
def test_a_bad_trusted_proxy_entry_is_a_settings_error_naming_it(raw: str) -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings(_env_file=None, trusted_proxies=raw)  # type: ignore[call-arg]
