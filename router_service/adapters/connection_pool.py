"""The agent client's connection pool: bounded, keep-alive per origin, idle connections expired.

A connection goes back to its origin's idle pool only after a complete response that allows
keep-alive. One that errored, was cancelled or timed out mid-exchange is aborted, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from router_service.adapters.http1 import Connection, ConnectionFailed, Origin, Response, Target


class ConnectionPool:
    """At most ``max_connections`` open (busy or idle); idle ones kept per origin, then expired.

    A caller at the limit evicts another origin's idle connection if there is one, then waits
    (within its own deadline) for a slot; every connection closed or returned wakes one waiter.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_idle_per_origin: int,
        idle_timeout_s: float,
        max_body: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._max_idle = max_idle_per_origin
        self._idle_timeout_s = idle_timeout_s
        self._max_body = max_body
        self._ssl_context = ssl_context
        self._open: set[Connection] = set()
        self._connecting = 0
        self._idle: dict[Origin, deque[Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open) + self._connecting

    async def exchange(self, target: Target, request: bytes, timeout_s: float) -> Response:
        """Send ``request`` and read the whole response, all within ``timeout_s`` (connecting,
        waiting for a slot, every response byte), else ``TimeoutError``.

        An idle connection already known to be closed is swapped for a new one before anything
        is written. Once the request is written it is never sent again here: a failure is
        raised, with ``ConnectionFailed.reused`` telling the keep-alive race (the agent closed
        an idle connection as the request went out) from other failures. The agent may have
        read the request either way, so a re-send is the caller's: a counted, bounded attempt.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        # The usual case, a keep-alive connection idle: nothing to wait for, no timer but the
        # connection's own for the exchange.
        conn = None if self._closed else self._take_idle(target.origin)
        reused = conn is not None
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn, reused = await self._acquire(target, reuse=True)
        if reused and not conn.writable:
            conn.abort()
            async with asyncio.timeout_at(deadline):
                conn, reused = await self._acquire(target, reuse=False)
        try:
            return await self._run(conn, request, deadline)
        except ConnectionFailed as exc:
            exc.reused = reused
            raise

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.idle = False
        self._idle.clear()
        for conn in list(self._open):
            conn.abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports report connection_lost

    def discard(self, response: Response) -> None:
        """Close the connection that carried ``response`` rather than reuse it: the caller
        found the answer belongs to another request, so what follows on it cannot be trusted."""
        conn = response.connection
        if conn is None:
            return
        if conn.idle:
            conn.idle = False
            self._idle[conn.origin].remove(conn)
        conn.abort()  # ``lost`` frees its slot when the transport reports the close

    def lost(self, conn: Connection) -> None:
        """From ``connection_lost``: the slot is free; an idle connection leaves its pool."""
        if conn not in self._open:
            return
        self._open.discard(conn)
        if conn.idle:
            conn.idle = False
            self._idle[conn.origin].remove(conn)
        self._wake()

    async def _run(self, conn: Connection, request: bytes, deadline: float) -> Response:
        try:
            response = await conn.send(request, deadline)
        except BaseException:
            conn.abort()
            raise
        if response.keep_alive and not conn.closed:
            self._release(conn)
        else:
            conn.close()
        return response

    async def _acquire(self, target: Target, *, reuse: bool) -> tuple[Connection, bool]:
        """A connection to ``target``'s origin, and whether it is a reused idle one."""
        while True:
            if self._closed:
                raise ConnectionFailed("client closed", received=False)
            if reuse and (conn := self._take_idle(target.origin)) is not None:
                return conn, True
            if self.open_connections < self._max_connections:
                return await self._connect(target), False
            self._evict_idle()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: pass the wake-up on
                elif waiter in self._waiters:  # a wake-up may have dropped it, cancelled
                    self._waiters.remove(waiter)
                raise

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        stale = asyncio.get_running_loop().time() - self._idle_timeout_s
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out
            conn.idle = False
            if not conn.closed and conn.idle_since > stale:
                return conn
            conn.close()
        return None

    async def _connect(self, target: Target) -> Connection:
        made: list[Connection] = []

        def factory() -> Connection:
            conn = Connection(target.origin, self._max_body, self.lost)
            made.append(conn)
            self._open.add(conn)
            return conn

        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            if target.tls:
                context = self._ssl_context = self._ssl_context or ssl.create_default_context()
                await loop.create_connection(
                    factory, target.host, target.port, ssl=context, server_hostname=target.host
                )
            else:
                await loop.create_connection(factory, target.host, target.port)
        except BaseException:
            for conn in made:
                conn.abort()
                self.lost(conn)
            raise
        finally:
            self._connecting -= 1
            if not made:
                self._wake()
        return made[-1]

    def _release(self, conn: Connection) -> None:
        idle = self._idle.setdefault(conn.origin, deque())
        if self._closed or len(idle) >= self._max_idle:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        conn.idle = True
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout_s / 2, self._sweep)
        self._wake()

    def _evict_idle(self) -> None:
        """Close the longest-idle connection of any origin (ours had none) to free a slot."""
        oldest: deque[Connection] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is not None:
            conn = oldest.popleft()
            conn.idle = False
            conn.close()

    def _sweep(self) -> None:
        self._sweeper = None
        stale = asyncio.get_running_loop().time() - self._idle_timeout_s
        for origin, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= stale:
                conn = idle.popleft()
                conn.idle = False
                conn.close()
            if not idle:
                del self._idle[origin]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(
                self._idle_timeout_s / 2, self._sweep
            )

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
