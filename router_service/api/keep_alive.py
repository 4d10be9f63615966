"""Idle keep-alive connections: how long one is kept, and how many a process keeps.

A connection idle between two requests is closed after ``KEEP_ALIVE_S`` (uvicorn's default is
5 s). A client that reuses a pooled connection just as the server closes it gets a reset for a
request the server never read: the keep-alive race. Clients and load balancers avoid it by
dropping their idle connections before the server does, so the server must keep them longer
than they do (an AWS load balancer keeps them 60 s, nginx's upstreams 60 s); 75 s by default.

Kept that long, idle connections could pile up: a client that opens a connection per request and
never closes it would hold hundreds. So a process keeps at most ``MAX_IDLE_CONNECTIONS`` idle;
past that, the one idle longest is closed, as nginx does when its connections run short. The
longest idle is the one its client is least likely to reuse, and a connection busy with a
request is never closed here.
"""

from __future__ import annotations

from typing import Protocol


class Closable(Protocol):
    def close_idle(self) -> None: ...


class IdleConnections:
    """The process's idle keep-alive connections, longest idle first (a dict keeps insertion
    order: a connection enters when its response completes and leaves when bytes arrive)."""

    __slots__ = ("_idle", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._idle: dict[Closable, None] = {}

    def __len__(self) -> int:
        return len(self._idle)

    def idle(self, conn: Closable) -> None:
        """``conn`` waits for its next request; past the limit, the longest idle is closed."""
        self._idle[conn] = None
        while len(self._idle) > self._limit:
            oldest = next(iter(self._idle))
            del self._idle[oldest]
            oldest.close_idle()

    def busy(self, conn: Closable) -> None:
        """Bytes arrived on ``conn``, or it closed."""
        self._idle.pop(conn, None)
