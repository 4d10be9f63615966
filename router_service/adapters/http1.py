"""One HTTP/1.1 client connection over asyncio: the request's bytes and the response's parse.

The agent client's wire format, lean on purpose because the agent call is on the hot path (a
profile under load put aiohttp's per-request machinery at about 13 % of the router's CPU). It does
what the agent client needs and nothing else: one ``POST`` at a time per connection; bodies framed
by Content-Length, by chunks or by the end of the connection (httptools parses); 1xx answers
skipped; a cap on the head (``MAX_HEAD_BYTES``) and one on the body, checked as bytes arrive.
The pool that reuses connections is :mod:`router_service.adapters.connection_pool`.
"""

from __future__ import annotations

import asyncio
from base64 import b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, unquote, urlsplit

import httptools

Origin = tuple[str, str, int]  # scheme, host, port: the key of an idle pool

# A caller's own framing headers are dropped: Host and Content-Length are the client's to write.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_UNSAFE_VALUE = frozenset("\r\n\x00")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
# The status line and headers of an answer (1xx answers before it included), as proxies cap
# them: past it the answer is invalid and the connection dropped, unread. Without a cap, an
# agent's endless header would be held whole (httptools accumulates a value as it arrives,
# at a cost that grows with its square).
MAX_HEAD_BYTES = 64 * 1024


class TransportError(Exception):
    """The exchange failed below HTTP semantics; the message says how."""


class ConnectionFailed(TransportError):
    """Connection closed or reset, or an invalid response. ``received``: any answer byte came;
    ``reused``: the request went out on a pooled keep-alive connection (set by the pool)."""

    def __init__(self, message: str, *, received: bool) -> None:
        super().__init__(message)
        self.received = received
        self.reused = False


class ResponseTooLarge(TransportError):
    """The body passed the cap (or its declared length did); reading stopped there."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status} body over the cap")
        self.status = status


class _HeadTooLarge(Exception):
    """Raised inside ``data_received`` when the head passes ``MAX_HEAD_BYTES``."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    keep_alive: bool
    # The connection that carried it, for a caller that finds the answer was not its own
    # (``ConnectionPool.discard``); None when the answer ended with the connection.
    connection: Connection | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """An agent URL parsed once: where to connect and the start of every request to it."""

    origin: Origin
    host: str
    port: int
    tls: bool
    head: bytes  # request line, Host (and Authorization from the URL's userinfo, if any)

    def encode(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        """The whole request; ``ValueError`` for a header that could split or smuggle."""
        lines = []
        typed = False
        for name, value in headers.items():
            if not name or not _TOKEN.issuperset(name):
                raise ValueError(f"invalid header name {name!r}")
            if not _UNSAFE_VALUE.isdisjoint(value):
                raise ValueError(f"header {name} contains CR, LF or NUL")
            lowered = name.lower()
            if lowered in _FRAMING:
                continue
            typed = typed or lowered == "content-type"
            lines.append(f"{name}: {value}\r\n")
        if not typed:
            lines.append("Content-Type: application/json\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return b"".join((self.head, "".join(lines).encode(), body))


def parse_target(url: str, method: str = "POST") -> Target:
    """``http(s)://[user:pass@]host[:port]/path?query``, its head for ``method`` (delivery
    posts; the card check gets); ``ValueError`` for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default else f"{shown}:{port}"
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
    head = f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        head += f"Authorization: Basic {b64encode(credentials.encode()).decode()}\r\n"
    return Target((scheme, host, port), host, port, scheme == "https", head.encode())


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; the parser's callbacks fill the pending response."""

    def __init__(
        self, origin: Origin, max_body: int, on_lost: Callable[[Connection], None]
    ) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self.idle = False  # in its origin's idle pool
        self.closed = False
        self._on_lost = on_lost
        self._max_body = max_body
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._interim = False  # parsing a 1xx answer
        self._head_done = False
        self._head_size = 0  # bytes of the answer fed before its head was complete
        self._received = False
        self._error: TransportError | None = None

    @property
    def writable(self) -> bool:
        """Nothing known to be wrong with it: a request written now would leave."""
        transport = self._transport
        return transport is not None and not self.closed and not transport.is_closing()

    def send(self, request: bytes, deadline: float) -> asyncio.Future[Response]:
        """The response, or ``TimeoutError`` once the loop's clock passes ``deadline`` (the
        connection is aborted then: a late answer must not be read as the next one's)."""
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            raise ConnectionFailed("connection already closed", received=False)
        self._status = self._size = self._head_size = 0
        self._headers = {}
        self._body = []
        self._head_done = self._received = False
        self._error = None
        waiter = self._waiter = self._loop.create_future()
        # A timer on the loop rather than ``asyncio.timeout`` around the await: the same
        # deadline for a fraction of the CPU (no context manager, no task cancellation).
        timer = self._loop.call_at(deadline, self._timed_out)
        waiter.add_done_callback(lambda _: timer.cancel())
        transport.write(request)
        return waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _timed_out(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("no complete response before the deadline"))
        self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # an idle connection must stay silent
            self.abort()
            return
        self._received = True
        try:
            if not self._head_done:
                data = self._feed_head(data)
            if data:
                self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionFailed("unexpected protocol upgrade", received=True))
        except httptools.HttpParserError as exc:
            self._fail(self._error or ConnectionFailed(f"invalid response: {exc}", received=True))
        except _HeadTooLarge:
            message = f"invalid response: status line and headers over {MAX_HEAD_BYTES} bytes"
            self._fail(ConnectionFailed(message, received=True))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None and self._head_done and self._until_close():
            waiter.set_result(Response(self._status, self._headers, b"".join(self._body), False))
            return
        if exc is not None:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        elif self._received:
            reason = "closed before the response was complete"
        else:
            reason = "closed without an answer"
        waiter.set_exception(ConnectionFailed(reason, received=self._received))

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:
            raise ConnectionFailed("data after the response", received=True)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True
            self._headers = {}
            return
        self._status = status
        self._head_done = True
        declared = self._headers.get(b"content-length")
        if declared is not None and int(declared) > self._max_body:
            self._error = ResponseTooLarge(status)
            raise self._error

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max_body:
            self._error = ResponseTooLarge(self._status)
            raise self._error
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            body = b"".join(self._body)
            keep_alive = self._parser.should_keep_alive()
            waiter.set_result(Response(self._status, self._headers, body, keep_alive, self))

    # --

    def _feed_head(self, data: bytes) -> bytes:
        """Feed what the head's cap allows; returns the rest (body bytes), or fails the
        exchange when the head is not complete within the cap."""
        room = MAX_HEAD_BYTES - self._head_size
        self._head_size += len(data)
        if len(data) <= room:
            self._parser.feed_data(data)
            return b""
        self._parser.feed_data(data[:room])
        if not self._head_done:
            raise _HeadTooLarge
        return data[room:]

    def _until_close(self) -> bool:
        """The body is delimited by the end of the connection (no length, not chunked)."""
        coding = self._headers.get(b"transfer-encoding", b"").lower()
        return b"content-length" not in self._headers and b"chunked" not in coding

    def _fail(self, error: TransportError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()
