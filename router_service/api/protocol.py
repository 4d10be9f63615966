"""The HTTP/1.1 protocol: uvicorn's httptools protocol plus limits uvicorn does not have.

Slow clients cannot hold a connection forever: the request line and headers must arrive within
``HEADER_TIMEOUT_S`` of the connection opening (or of the previous response), and they may not
exceed ``MAX_HEADER_BYTES`` (answered 431); the body must arrive within ``BODY_TIMEOUT_S`` of the
headers (answered 408, or the connection closed when the app has answered already). The body's
timer is armed only when a read leaves the body incomplete: a request that arrives whole, as
nearly all do, costs no timer at all. The protocol says so in the request's ASGI extensions
(``BODY_DEADLINE``), and ``api/body.py`` then keeps no timer of its own. Between requests, a
connection is kept ``KEEP_ALIVE_S``, and a process keeps at most ``MAX_IDLE_CONNECTIONS`` idle
(``api/keep_alive.py``). A client may queue ``MAX_PIPELINED`` requests behind the one being
answered, no more. A client that stops reading its answers has ``SEND_TIMEOUT_S`` to read on
before the connection is aborted. A request offering an upgrade (``h2c``, WebSocket) is served
as the HTTP/1.1 request it also is: the router speaks no other protocol.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router_service.api.auth import counted_as
from router_service.api.connection_limits import ConnectionLimits
from router_service.api.errors import raw_refusal
from router_service.api.keep_alive import IdleConnections

HTTP_LIMITS = "http_limits"
# Requests a client may queue on a connection behind the one being answered (HTTP/1.1
# pipelining). uvicorn queues every request of a read, each with its own state: 150 KB of
# pipelined GETs held about 6 MB. Past this, the queued ones are answered, the rest is not
# read, and the connection closes after the last answer (``connection: close``); a pipelining
# client must resend what was left unanswered (RFC 9112, section 9.3.2).
MAX_PIPELINED = 16
BODY_DEADLINE = "router.body_deadline"  # in scope["extensions"]: the protocol times the body


class GuardedHttpProtocol(HttpToolsProtocol):
    """Limits come from the app's lifespan state (``HTTP_LIMITS``), so the class itself stays
    importable by name in every worker process."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    body_timeout_s: float = 10.0
    send_timeout_s: float = 30.0
    keep_alive_s: float = 75.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.app_state.get(HTTP_LIMITS) or {}
        self.header_timeout_s = limits.get("header_timeout_s", self.header_timeout_s)
        self.max_header_bytes = limits.get("max_header_bytes", self.max_header_bytes)
        self.body_timeout_s = limits.get("body_timeout_s", self.body_timeout_s)
        self.send_timeout_s = limits.get("send_timeout_s", self.send_timeout_s)
        self.timeout_keep_alive = limits.get("keep_alive_s", self.keep_alive_s)
        self._idle_connections: IdleConnections | None = limits.get("idle_connections")
        self._connection_limits: ConnectionLimits | None = limits.get("connection_limits")
        self._client_key = ""  # what this connection counts under (``ConnectionLimits``)
        self._idle_key = ""  # and its client, for ``IdleConnections``
        self._admitted = False
        self._header_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._send_timer: TimerHandle | None = None
        self._body_pending = False  # headers parsed, the body not yet complete
        self._header_bytes = 0
        self._refused = False
        self._ending = False  # the pipeline overflowed: answer what is queued, read no more
        self._refusal_after: bytes | None = None
        self._upgrade_declined = False  # the headers offered an upgrade: parsed again without

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._too_slow(f"request headers not received within {self.header_timeout_s:g} s")

    def _too_slow(self, message: str, *, answer: bool = True) -> None:
        """A 408 with ``message`` (unless the app has answered already), then the close."""
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(raw_refusal(408, "Request Timeout", "request_timeout", message))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        self._idle_key = counted_as(host)
        limits = self._connection_limits
        if limits is not None:
            self._client_key = limits.client_of(host, self._idle_key)
            refused = limits.admit(self._client_key)
            if refused is not None:
                # At once: the client reads it when it sends its request.
                unavailable = raw_refusal(
                    503, "Service Unavailable", "too_many_connections", refused
                )
                transport.write(unavailable)
                transport.close()
                return
            self._admitted = True
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._sent()
        if self._idle_connections is not None:
            self._idle_connections.busy(self, self._idle_key)
        if self._admitted and self._connection_limits is not None:
            self._admitted = False
            self._connection_limits.release(self._client_key)
        self._body_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ending:
            return
        if self.timeout_keep_alive_task is not None and self._idle_connections is not None:
            self._idle_connections.busy(self, self._idle_key)
        self._unset_keepalive_if_required()
        self._feed(data)
        if self._body_pending and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_too_slow)

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, but a request offering an upgrade is served as the
        HTTP/1.1 request it also is."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            self._serve_without_upgrade(data[upgrade.args[0] :])

    def _should_upgrade(self) -> bool:
        return False  # the router speaks HTTP/1.1 only: no WebSocket, no h2c

    def _serve_without_upgrade(self, rest: bytes) -> None:
        """A request with ``Upgrade`` (and ``Connection: upgrade``), such as the ``h2c`` offer
        curl and Java's HTTP clients make: llhttp ends the message at its headers and hands
        the rest over as the new protocol's bytes. uvicorn then served the request without
        its body and read that body as the next request (a body of ``GET /...`` bytes ran as
        a request of its own). The upgrade is declined as RFC 9110 section 7.8 allows: the
        head is parsed again without the offer, by a new parser, and the body follows it."""
        head = self._head_without_upgrade()
        if head is None:  # CONNECT: nothing to serve over HTTP/1.1
            self.send_400_response("CONNECT is not served")
            return
        self._upgrade_declined = False
        self.parser = httptools.HttpRequestParser(self)
        self._feed(head + rest)

    def _head_without_upgrade(self) -> bytes | None:
        method = self.parser.get_method()
        if method == b"CONNECT":
            return None
        lines = [method + b" " + self.url + b" HTTP/" + self.parser.get_http_version().encode()]
        for name, value in self.headers:
            if name == b"upgrade":
                continue
            if name == b"connection":
                tokens = [t for t in value.split(b",") if t.strip().lower() != b"upgrade"]
                if not tokens:
                    continue
                value = b",".join(tokens)
            lines.append(name + b": " + value)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def pause_writing(self) -> None:
        """The transport holds more than its high-water mark: the client is not reading. From
        here it has ``SEND_TIMEOUT_S`` to take enough to bring the buffer down (nginx's
        ``send_timeout``); the app's writes wait meanwhile."""
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout_s, self._send_too_slow)

    def resume_writing(self) -> None:
        self._sent()
        super().resume_writing()

    def _sent(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_too_slow(self) -> None:
        """A client that does not read its answers held the connection, its buffered answers and
        the request waiting to write, for as long as it liked. Aborted: a close would wait for
        the buffer to drain."""
        self._send_timer = None
        self.logger.warning("Client did not read its answer within %g s.", self.send_timeout_s)
        self.transport.abort()

    def _body_done(self) -> None:
        self._body_pending = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_too_slow(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        unanswered = cycle is None or not cycle.response_started
        # The close ends the app's read as a disconnect.
        self._too_slow(f"body not received within {self.body_timeout_s:g} s", answer=unanswered)

    def on_message_begin(self) -> None:
        if self._ending:
            return
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes and not self._refused:
            self._refused = True
            message = f"request line and headers larger than {self.max_header_bytes} bytes"
            self.transport.write(
                raw_refusal(431, "Request Header Fields Too Large", "headers_too_large", message)
            )
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request that is not HTTP/1.1 (httptools could not parse it): the JSON error every
        refusal has, not uvicorn's text. Nothing after it on the connection is read. Whole
        requests before it in the same bytes are answered first, then the 400."""
        message = "the request is not valid HTTP/1.1"
        refusal = raw_refusal(400, "Bad Request", "invalid_http", message)
        if not self._body_pending and self.cycle is not None and not self.cycle.response_complete:
            self._ending = True
            self._refusal_after = refusal  # written when the newest answer is complete
            return
        self.transport.write(refusal)
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        if self._ending:
            return
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._ending:
            return
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self.parser.should_upgrade():  # parsed again without the offer (``_feed``)
            self._upgrade_declined = True
            return
        if len(self.pipeline) >= MAX_PIPELINED and not self._ending:
            self._ending = True
            last, _app = self.pipeline[0]  # the newest queued: answered last, then the close
            last.keep_alive = False
        if not self._refused and not self._ending:
            super().on_headers_complete()
            self._body_pending = True
            self.scope.setdefault("extensions", {})[BODY_DEADLINE] = {}
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = OneWrite(self.transport, cycle)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._refused and not self._ending:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_done()
        if not self._refused and not self._ending and not self._upgrade_declined:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        transport = self.cycle.transport if self.cycle is not None else None
        if isinstance(transport, OneWrite):
            transport.flush()  # a response with no body write (HEAD)
        super().on_response_complete()
        self._header_timer = None  # the keep-alive timeout covers the idle gap until next bytes
        if self._refusal_after is not None and self.cycle.response_complete:
            self.transport.write(self._refusal_after)
            self.transport.close()
        elif self.timeout_keep_alive_task is not None and self._idle_connections is not None:
            self._idle_connections.idle(self, self._idle_key)

    def close_idle(self) -> None:
        """Closed while idle, over ``MAX_IDLE_CONNECTIONS`` (``api/keep_alive.py``)."""
        self.timeout_keep_alive_handler()


class OneWrite:
    """The transport as one response cycle sees it: the status line and headers wait for the
    first body bytes and leave with them, one write (one ``send``) rather than two: uvicorn
    writes them apart, and a small ``send`` on loopback costs about 16 µs of CPU on the
    benchmark machine. A ``100 Continue`` (written before the response starts) and
    everything after the first body bytes pass straight through; anything held is written
    before the transport closes and when the response completes without body bytes."""

    __slots__ = ("_cycle", "_head", "_passing", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._passing = False  # the head has left: everything passes straight through

    def write(self, data: bytes) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._passing = True
            self._transport.write(head + data)
        elif not self._passing and self._cycle.response_started:
            self._head = data  # the status line and headers
        else:
            self._transport.write(data)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._passing = True
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
