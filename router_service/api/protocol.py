"""The HTTP/1.1 protocol: uvicorn's httptools protocol plus limits uvicorn does not have.

Slow clients cannot hold a connection forever: the request line and headers must arrive within
``HEADER_TIMEOUT_S`` of the connection opening (or of the previous response), and they may not
exceed ``MAX_HEADER_BYTES`` (answered 431). The body has its own timeout, in ``api/body.py``.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router_service.api.errors import raw_refusal

HTTP_LIMITS = "http_limits"


class GuardedHttpProtocol(HttpToolsProtocol):
    """Limits come from the app's lifespan state (``HTTP_LIMITS``), so the class itself stays
    importable by name in every worker process."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.app_state.get(HTTP_LIMITS) or {}
        self.header_timeout_s = limits.get("header_timeout_s", self.header_timeout_s)
        self.max_header_bytes = limits.get("max_header_bytes", self.max_header_bytes)
        self._header_timer: TimerHandle | None = None
        self._header_bytes = 0
        self._refused = False

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        if not self.transport.is_closing():
            message = f"request headers not received within {self.header_timeout_s:g} s"
            self.transport.write(raw_refusal(408, "Request Timeout", "request_timeout", message))
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
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

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._header_timer = None  # the keep-alive timeout covers the idle gap until next bytes
