"""API keys: only their SHA-256 digests are kept; comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from pydantic import SecretStr

from router_service.domain.errors import AuthError, ConfigError


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class KeyRing:
    """The keys the server accepts, parsed from ``API_KEY`` and ``API_KEYS``.

    ``API_KEYS`` is a comma-separated list of ``name:key`` (or bare keys, named key1, key2…).
    """

    def __init__(self, keys: list[ApiKey]) -> None:
        if not keys:
            raise ConfigError(
                "no API key configured: set API_KEY (one key) or API_KEYS (name:key,...)"
            )
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, api_key: SecretStr | None, api_keys: SecretStr | None) -> KeyRing:
        keys: list[ApiKey] = []
        if api_key is not None and api_key.get_secret_value():
            keys.append(ApiKey("default", _digest(api_key.get_secret_value())))
        if api_keys is not None:
            entries = [e.strip() for e in api_keys.get_secret_value().split(",") if e.strip()]
            for index, entry in enumerate(entries, start=1):
                name, sep, key = entry.partition(":")
                if not sep:
                    name, key = f"key{index}", entry
                if not key:
                    raise ConfigError(f"API_KEYS entry {index} ({name!r}) has an empty key")
                keys.append(ApiKey(name, _digest(key)))
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
