"""Console sessions: an HMAC-signed cookie holding the key's name, a mark of the key, its
scopes, an expiry and a nonce, never the key itself; and the CSRF token derived from that nonce.

The cookie is ``HttpOnly`` and ``SameSite=Strict``. Each request looks the key up again in the
key ring, by its name and its mark (an HMAC of the key's digest): a key removed, replaced under
the same name (a rotation) or narrowed in the configuration loses its sessions' rights at
once. The CSRF token is a synchronizer token: ``HMAC(secret, nonce)``, tied to one session,
checked on every state-changing request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

COOKIE = "router_console"  # Secure too when reached over HTTPS (``access.reached_over_https``)


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    key_name: str
    key_mark: str  # ``SessionSigner.mark`` of the key signed in with: a rotated key has another
    scopes: frozenset[str]
    expires_at: float
    nonce: str

    def can(self, scope: str) -> bool:
        return scope in self.scopes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and verifies session tokens and CSRF tokens with one secret."""

    def __init__(
        self, secret: bytes, lifetime_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = hashlib.sha256(b"router-console-session\0" + secret).digest()
        self._lifetime_s = lifetime_s
        self._clock = clock

    @property
    def lifetime_s(self) -> float:
        return self._lifetime_s

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def mark(self, key_digest: bytes) -> str:
        """What a session remembers of its key: enough to tell it from the key that replaces it
        under the same name, nothing to guess the key from."""
        return self._mac(b"key\0" + key_digest)[:16].hex()

    def issue(
        self, key_name: str, key_digest: bytes, scopes: frozenset[str]
    ) -> tuple[str, ConsoleSession]:
        session = ConsoleSession(
            key_name,
            self.mark(key_digest),
            scopes,
            self._clock() + self._lifetime_s,
            secrets.token_hex(16),
        )
        fields = {"n": key_name, "k": session.key_mark, "s": sorted(scopes)}
        body = orjson.dumps({**fields, "e": session.expires_at, "c": session.nonce})
        return f"{_b64(body)}.{_b64(self._mac(body))}", session

    def verify(self, token: str | None) -> ConsoleSession | None:
        """The session a token stands for, or None when it is absent, forged or expired."""
        if not token or token.count(".") != 1 or len(token) > 4096:
            return None
        body_text, mac_text = token.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            fields = orjson.loads(body)
            session = ConsoleSession(
                str(fields["n"]),
                str(fields["k"]),
                frozenset(fields["s"]),
                float(fields["e"]),
                str(fields["c"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > self._clock() else None

    def csrf_token(self, session: ConsoleSession) -> str:
        return self._mac(b"csrf\0" + session.nonce.encode()).hex()

    def csrf_valid(self, session: ConsoleSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            self.csrf_token(session).encode(), (presented or "").encode()
        )
