"""A raw HTTP/1.1 agent on loopback whose every answer a test writes byte by byte.

It runs on its own event loop in a thread, so a test can act on the server (close its
connections, say) while the client's loop is held still, and it counts what a client cannot
hide: accepted connections, connections open at once, and every request that arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Received:
    connection: int  # the accept it came on: 0, 1, ...
    request_line: str
    headers: dict[str, str]  # names lower-cased
    raw_head: bytes
    body: bytes


# Writes the answer; returns whether to keep reading requests on this connection.
Answer = Callable[[Received, asyncio.StreamWriter], Awaitable[bool]]


def response(
    status: int = 200,
    body: bytes = b'{"ok":true}',
    *,
    reason: str = "X",
    version: str = "1.1",
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> bytes:
    fields = {"Content-Type": "application/json", **(headers or {})}
    if length:
        fields["Content-Length"] = str(len(body))
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"HTTP/{version} {status} {reason}\r\n{head}\r\n".encode() + body


async def answer_ok(received: Received, writer: asyncio.StreamWriter) -> bool:
    writer.write(response())
    await writer.drain()
    return True


class RawAgent:
    def __init__(
        self,
        answer: Answer = answer_ok,
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer
        self.host = host
        self.port = 0
        self.accepts = 0
        self.open = 0
        self.peak = 0
        self.requests: list[Received] = []
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, path: str = "/agent") -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{shown}:{self.port}{path}"

    def __enter__(self) -> RawAgent:
        self._thread.start()
        assert self._ready.wait(10), "the raw agent did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """``callback(*args)`` on the agent's own loop, from any thread (to feed an answer)."""
        self._loop.call_soon_threadsafe(callback, *args)

    def drop_connections(self) -> None:
        """Close every connection and return once their sockets are closed.

        Blocking on purpose: called from a client's coroutine, it holds the client's loop still,
        so the client cannot notice the close before its next request goes out.
        """

        async def drop() -> None:
            writers = list(self._writers)
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.accepts
        self.accepts += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self._writers.add(writer)
        try:
            while await self._exchange(connection, reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self.open -= 1

    async def _exchange(
        self, connection: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        received = Received(connection, request_line, headers, head, body)
        self.requests.append(received)
        return await self.answer(received, writer)
