"""Who may do what in the console: the session behind a request, the CSRF check, the audit
line of every state-changing action, and the security headers of every console response."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from router_service.api.auth import forwarded_https
from router_service.api.body import BodyLimits, read_body
from router_service.api.edge import edge
from router_service.console.session import COOKIE, ConsoleSession
from router_service.console.state import ConsoleState
from router_service.domain.errors import (
    AuthError,
    Forbidden,
    UnsupportedMediaType,
    ValidationFailed,
)
from router_service.observability.logging import get_logger

READ = "logs:read"
ADMIN = "dlq:admin"
PREFIX = "/console"

# No inline script or style anywhere: everything comes from /console/static.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


def console_state(request: Request) -> ConsoleState:
    found: ConsoleState = request.app.state.console
    return found


def session_of(request: Request) -> ConsoleSession | None:
    """The signed-in session, with the scopes its key still has; None without one, or when
    the key it signed in with is gone (removed, or replaced under the same name)."""
    state = console_state(request)
    session = state.signer.verify(request.cookies.get(COOKIE))
    if session is None:
        return None
    now_held = state.keys.scopes_of(
        session.key_name, lambda digest: state.signer.mark(digest) == session.key_mark
    )
    scopes = session.scopes & now_held
    if READ not in scopes:
        return None
    return dataclasses.replace(session, scopes=scopes)


@dataclass(frozen=True, slots=True)
class Form:
    fields: dict[str, list[str]]

    def first(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else ""

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])


def reached_over_https(request: Request) -> bool:
    """HTTPS to the router, or to a trusted proxy in front of it (``X-Forwarded-Proto``): the
    session cookie is ``Secure`` then."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    proto = request.headers.get("x-forwarded-proto")
    return forwarded_https(peer, proto, edge(request).trusted_proxies)


def refuse_cross_site(request: Request) -> None:
    """A form a browser sends from another site's page is refused: with the CSRF token every
    form but sign-in carries, and for sign-in itself (login CSRF: a page elsewhere signing its
    visitor in with its own key, so that what they do next is seen and done under that key).
    The browser says where the form comes from in ``Sec-Fetch-Site``; one too old to send it,
    in ``Origin``, checked against ``Host``. A client sending neither is no browser."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        cross = site not in ("same-origin", "none")  # "none": the person typed or bookmarked it
    else:
        origin = request.headers.get("origin")
        cross = origin is not None and urlsplit(origin).netloc != request.headers.get("host")
    if cross:
        raise Forbidden("a console form must come from the console's own pages")


async def read_form(request: Request, limits: BodyLimits) -> Form:
    """A URL-encoded form from the console's own pages, under the same size and time limits as
    a signal's body."""
    refuse_cross_site(request)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Content-Type must be application/x-www-form-urlencoded")
    raw = await read_body(request, limits)
    # As in a URL (``api/middleware.NoNulInUrl``): Postgres refuses a NUL in text.
    if b"%00" in raw or b"\x00" in raw:
        raise ValidationFailed("a form field holds a NUL character (%00), which none may hold")
    fields: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(name, []).append(value)
    return Form(fields)


async def authorised_form(request: Request, scope: str) -> tuple[ConsoleSession, Form]:
    """A state-changing request: a session, the scope, and the session's CSRF token."""
    session = session_of(request)
    if session is None:
        raise AuthError("sign in to the console first")
    state = console_state(request)
    form = await read_form(request, edge(request).limits)
    if not state.signer.csrf_valid(session, form.first("csrf")):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")
    if not session.can(scope):
        raise Forbidden(f"the key {session.key_name!r} lacks the scope {scope!r}")
    return session, form


def audit(session: ConsoleSession, action: str, **details: Any) -> None:
    """One JSON line per state-changing console action, naming the key (never the key)."""
    get_logger("console.audit").info(
        "console.action", action=action, key=session.key_name, **details
    )


class ConsoleHeaders:
    """Security headers on every response under /console, and ``Server-Timing`` (the server's
    own time for the page, which the console benchmark reads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = [
                    *message.get("headers", []),
                    *SECURITY_HEADERS,
                    (b"server-timing", took),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)
