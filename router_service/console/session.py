"""Console sessions: an HMAC-signed cookie holding the key's name, its scopes, an expiry and a
nonce, never the key itself; and the CSRF token derived from that nonce.

The cookie is ``HttpOnly`` and ``SameSite=Strict``. Each request re-reads the key's scopes from
the key ring, so a key removed or narrowed in the configuration loses its sessions' rights at
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

COOKIE = "router_console"  # marked Secure too when the console is reached over HTTPS


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    key_name: str
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

    def issue(self, key_name: str, scopes: frozenset[str]) -> tuple[str, ConsoleSession]:
        session = ConsoleSession(
            key_name, scopes, self._clock() + self._lifetime_s, secrets.token_hex(16)
        )
        body = orjson.dumps(
            {"n": key_name, "s": sorted(scopes), "e": session.expires_at, "c": session.nonce}
        )
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
                str(fields["n"]), frozenset(fields["s"]), float(fields["e"]), str(fields["c"])
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
