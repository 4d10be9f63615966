"""API keys with scopes. Only SHA-256 digests are kept; comparison is constant-time; repeated
failures from one client address are refused for a while, and only failures: a request with a
valid key is never refused by the failure limit (behind a load balancer every client shares a few
addresses, and one noisy client must not lock out the others).

Keys come from ``API_KEY`` (one key, every scope), ``API_KEYS`` (comma-separated
``name:key`` or ``name:key:scope+scope``; bare keys are named key1, key2…) and ``API_KEYS_FILE``
(YAML: ``keys: [{name, sha256 | key, scopes, senders}]`` — a file of digests keeps no secret at
rest). A key of the file may be bound to the sender ids it routes as (``senders``), so that the
per-sender limit and share hold between keys, not only between the integrations of one key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from router_service.config.settings import IpNetwork
from router_service.domain.errors import AuthError, ConfigError, Forbidden, TooManyAuthFailures

SCOPES = frozenset({"route", "logs:read", "dlq:admin", "config:admin"})


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset[str] = SCOPES
    # The sender ids the key may route signals as: exact ids, or prefixes ending in '*'.
    # None: any sender id (``API_KEY`` and ``API_KEYS``, and a file's key without ``senders``).
    senders: tuple[str, ...] | None = None

    def may_send_as(self, sender_id: str) -> bool:
        if self.senders is None:
            return True
        return any(
            sender_id.startswith(p[:-1]) if p.endswith("*") else sender_id == p
            for p in self.senders
        )


def require_sender(key: ApiKey, sender_id: str) -> None:
    if not key.may_send_as(sender_id):
        raise Forbidden(f"the key {key.name!r} may not route signals as sender {sender_id!r}")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _scopes(raw: Any, where: str) -> frozenset[str]:
    scopes = frozenset(raw.split("+") if isinstance(raw, str) else raw)
    unknown = scopes - SCOPES
    if unknown or not scopes:
        known = ", ".join(sorted(SCOPES))
        raise ConfigError(f"{where}: unknown or empty scopes {sorted(unknown)} (known: {known})")
    return scopes


def _senders(raw: Any, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) and p for p in raw):
        raise ConfigError(f"{where}: 'senders' must be a non-empty list of sender ids")
    misplaced = [p for p in raw if "*" in p[:-1]]
    if misplaced:
        raise ConfigError(
            f"{where}: '*' may only end a sender pattern (a prefix), not {misplaced[0]!r}"
        )
    return tuple(raw)


def _split_scopes(rest: str) -> tuple[str, str]:
    """``key:route+logs:read`` -> (key, scopes); scopes hold colons themselves, so the split is
    at the first colon after which everything is known scopes."""
    for index, char in enumerate(rest):
        if char == ":" and set(rest[index + 1 :].split("+")) <= SCOPES:
            return rest[:index], rest[index + 1 :]
    return rest, ""


def _from_env(api_keys: str) -> list[ApiKey]:
    keys = []
    entries = [e.strip() for e in api_keys.split(",") if e.strip()]
    for index, entry in enumerate(entries, start=1):
        name, sep, rest = entry.partition(":")
        if not sep:
            name, rest = f"key{index}", entry
        # A last ":scope+scope" part counts only when every part is a known scope, so keys
        # that contain a colon keep working.
        key, scopes = _split_scopes(rest)
        if not key:
            raise ConfigError(f"API_KEYS entry {index} ({name!r}) has an empty key")
        keys.append(ApiKey(name, _digest(key), frozenset(scopes.split("+")) if scopes else SCOPES))
    return keys


def _from_file(path: Path) -> list[ApiKey]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the keys file: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: cannot read the keys file: nested too deep") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a mapping with a 'keys' list")
    keys = []
    for index, entry in enumerate(entries):
        where = f"{path}: keys[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}: each key needs a 'name'")
        if isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64:
            digest = bytes.fromhex(entry["sha256"])
        elif isinstance(entry.get("key"), str) and entry["key"]:
            digest = _digest(entry["key"])
        else:
            raise ConfigError(f"{where}: give 'sha256' (hex digest of the key) or 'key'")
        scopes = _scopes(entry.get("scopes", SCOPES), where)
        keys.append(ApiKey(entry["name"], digest, scopes, _senders(entry.get("senders"), where)))
    return keys


class KeyRing:
    """The keys the server accepts."""

    def __init__(self, keys: list[ApiKey]) -> None:
        if not keys:
            raise ConfigError(
                "no API key configured: set API_KEY (one key), API_KEYS (name:key,...) "
                "or API_KEYS_FILE"
            )
        self._keys = tuple(keys)

    @classmethod
    def from_settings(
        cls,
        api_key: SecretStr | None,
        api_keys: SecretStr | None,
        keys_file: Path | None = None,
    ) -> KeyRing:
        keys: list[ApiKey] = []
        if api_key is not None and api_key.get_secret_value():
            keys.append(ApiKey("default", _digest(api_key.get_secret_value())))
        if api_keys is not None:
            keys.extend(_from_env(api_keys.get_secret_value()))
        if keys_file is not None:
            keys.extend(_from_file(keys_file))
        return cls(keys)

    def authenticate(self, presented: str | None) -> ApiKey:
        if not presented:
            raise AuthError("missing X-API-Key header")
        digest = _digest(presented)
        found: ApiKey | None = None
        for key in self._keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise AuthError("invalid API key")
        return found

    def scopes_of(self, name: str, is_same: Callable[[bytes], bool]) -> frozenset[str]:
        """The scopes the key called ``name`` has now, when it is still the same key (``is_same``
        of its digest); empty when it is gone or another key has the name. A console session
        loses what its key loses."""
        for key in self._keys:
            if key.name == name and is_same(key.digest):
                return key.scopes
        return frozenset()


def require_scope(key: ApiKey, scope: str) -> None:
    if scope not in key.scopes:
        raise Forbidden(f"the key {key.name!r} lacks the scope {scope!r}")


def is_trusted_proxy(address: str, proxies: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: tuple[IpNetwork, ...]) -> str:
    """The client's address (``FailureLimiter`` counts its failures under ``counted_as`` of it).

    ``X-Forwarded-For`` is honoured only when the peer is a trusted proxy: then the client is the
    right-most address in it that is not itself a trusted proxy (everything left of that was
    written by the client and proves nothing).
    """
    if not forwarded_for or not proxies or not is_trusted_proxy(peer, proxies):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        if not is_trusted_proxy(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a garbled header: count against the proxy rather than guess
    return peer


def forwarded_https(peer: str, forwarded_proto: str | None, proxies: tuple[IpNetwork, ...]) -> bool:
    """Whether a trusted proxy in front says its client came over HTTPS: ``X-Forwarded-Proto``
    from a peer in ``TRUSTED_PROXIES``, its last value (the one the nearest proxy wrote)."""
    if not forwarded_proto or not proxies or not is_trusted_proxy(peer, proxies):
        return False
    return forwarded_proto.rsplit(",", 1)[-1].strip().lower() == "https"


def counted_as(address: str) -> str:
    """What one client's failures are counted under: an IPv4 address, or an IPv6 address's /64.
    A /64 is one subscriber's or one host's allocation, whose every address its holder can use:
    counted one by one, each of its 2**64 addresses would start a fresh allowance. An IPv4
    address written as IPv6 (``::ffff:192.0.2.1``) is that IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureLimiter:
    """At most ``limit`` failed authentications per client address per ``window_s``; only
    consulted once a request has failed authentication.

    Bounded memory: the least recently seen addresses are forgotten beyond ``max_clients``.
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _count(self, client: str) -> int:
        started, count = self._failures.get(client, (0.0, 0))
        if self._clock() - started > self._window_s:
            return 0
        return count

    def failed(self, client: str) -> None:
        """Count one failed authentication; ``TooManyAuthFailures`` once over the limit."""
        client = counted_as(client)
        count = self._count(client)
        if count >= self._limit:
            raise TooManyAuthFailures("too many failed authentications from this address")
        started = self._failures[client][0] if count else self._clock()
        self._failures[client] = (started, count + 1)
        self._failures.move_to_end(client)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
