"""A lane: one connection of the pool, kept by a writer that runs one statement at a time.

The two group commits (claims and outcomes) each write one batch at a time, and every signal
waits for both. Taking a connection out of asyncpg's pool and giving it back costs the router
more CPU than a small statement's own client side (a holder, a proxy, a shielded release task
and two gauge updates); a lane keeps its connection from one batch to the next instead.

It stays the pool's connection: counted in the budget and as in use, given back when the pool
closes. A statement that fails on it terminates it (as a pooled statement's failure does) and
the next statement takes a fresh one from the pool; ``run_twice`` retries once on that fresh
connection, as ``PgPool.run_twice`` does. When the pool is too small to spare a connection for
good (``PgPool.lane``), the lane takes and returns one per statement like any other caller.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from router_service.domain.errors import Overloaded, StorageUnavailable

if TYPE_CHECKING:
    from router_service.adapters.db.pg_pool import PgPool

T = TypeVar("T")


class PgLane:
    def __init__(self, pool: PgPool, operation: str, *, pinned: bool) -> None:
        self._pool = pool
        self._operation = operation
        self.pinned = pinned
        self._conn: Any = None
        self._owner: asyncpg.Pool | None = None  # the asyncpg pool ``_conn`` came from
        self._busy = False
        self._closed = False

    async def run_twice(self, work: Callable[[Any], Awaitable[T]]) -> tuple[T, bool]:
        """``work(connection)``, idempotent: once more on a fresh connection if the kept one
        turned out dead. Returns the result and whether it took the second try."""
        if not self.pinned:
            return await self._pool.run_twice(self._operation, work)
        try:
            return await self._run(work), False
        except StorageUnavailable:
            return await self._run(work), True

    async def close(self) -> None:
        """Give the connection back (at once, or when the statement running on it ends)."""
        self._closed = True
        if not self._busy:
            await self._drop()

    async def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        if self._busy:
            raise RuntimeError("a lane runs one statement at a time")
        self._busy = True
        started = time.perf_counter()
        ok = False
        try:
            conn = self._conn
            if conn is None or _gone(conn):
                await self._drop()
                self._owner, conn = await self._pool.acquire()
                self._conn = conn
            try:
                result = await work(conn)
            except BaseException:
                await self._drop(terminate=True)  # never run anything on it again
                raise
            ok = True
            return result
        except (Overloaded, StorageUnavailable):
            raise
        except Exception as exc:
            raise await self._pool.unavailable(exc) from exc
        finally:
            self._busy = False
            if self._closed:
                await self._drop()
            self._pool.called(self._operation, started, ok)

    async def _drop(self, *, terminate: bool = False) -> None:
        conn, owner = self._conn, self._owner
        self._conn = self._owner = None
        if conn is None or owner is None:
            return
        if terminate:
            conn.terminate()
        await self._pool.release(owner, conn)


def _gone(conn: Any) -> bool:
    """Closed, or already taken back by the pool (asyncpg does that when a connection is lost,
    and a released connection's proxy refuses every call)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True
