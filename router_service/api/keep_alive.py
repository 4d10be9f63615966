"""Idle keep-alive connections: how long one is kept, and how many a process keeps.

A connection idle between two requests is closed after ``KEEP_ALIVE_S`` (uvicorn's default is
5 s). A client that reuses a pooled connection just as the server closes it gets a reset for a
request the server never read: the keep-alive race. Clients and load balancers avoid it by
dropping their idle connections before the server does, so the server must keep them longer
than they do (an AWS load balancer keeps them 60 s, nginx's upstreams 60 s); 75 s by default.

Kept that long, idle connections could pile up: a client that opens a connection per request and
never closes it would hold hundreds. So a process keeps at most ``MAX_IDLE_CONNECTIONS`` idle;
past that, one is closed, as nginx does when its connections run short: the one idle longest
of the client holding the most idle ones. Closed longest idle first across all clients, a
client keeping 600 connections busy made every other client's connection, idle a second
between its requests, the longest idle: closed under it, again and again. A connection busy
with a request is never closed here.
"""

from __future__ import annotations

from typing import Protocol


class Closable(Protocol):
    def close_idle(self) -> None: ...


class IdleConnections:
    """The process's idle keep-alive connections by client, longest idle first (a dict keeps
    insertion order: a connection enters when its response completes and leaves when bytes
    arrive or it closes)."""

    __slots__ = ("_by_client", "_count", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._by_client: dict[str, dict[Closable, None]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def idle(self, conn: Closable, client: str) -> None:
        """``conn`` of ``client`` waits for its next request; past the limit, the longest idle
        of the client holding the most idle connections is closed."""
        self.busy(conn, client)  # (idle already: to the back of the queue)
        self._by_client.setdefault(client, {})[conn] = None
        self._count += 1
        while self._count > self._limit:
            most = max(self._by_client, key=lambda c: len(self._by_client[c]))
            oldest = next(iter(self._by_client[most]))
            self.busy(oldest, most)
            oldest.close_idle()

    def busy(self, conn: Closable, client: str) -> None:
        """Bytes arrived on ``conn``, or it closed."""
        idle = self._by_client.get(client)
        if idle is None or conn not in idle:
            return
        del idle[conn]
        self._count -= 1
        if not idle:
            del self._by_client[client]
