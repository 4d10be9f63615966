"""A pooled SQLite connection taken out and given back whole, whatever cancels the caller.

SQLAlchemy's asyncio pool is not safe to cancel on aiosqlite. A read checks its connection out
with ``isolation_level="AUTOCOMMIT"``, which sets the driver's isolation level: a round trip to
aiosqlite's thread inside the checkout. A task cancelled during it (a client that hung up, a
timeout) left the connection checked out and held by nobody until the garbage collector found
it: a slot of the pool lost until then, and a warning. At random moments, 49 of 1,000
cancelled reads did so. Here the checkout and the return run as tasks of their own: a cancelled
caller stops waiting for them, they finish, and the connection goes back to the pool. The
store's ``close`` waits for those still running before the engine is disposed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")


class Checkouts:
    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    @asynccontextmanager
    async def connect(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """``engine.connect()``, with its checkout and its return out of the caller's reach."""
        conn = engine.connect()
        taking = self._detached(conn.start())
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The checkout goes on without the caller: the connection goes back once it is out.
            taking.add_done_callback(lambda done: self._give_back(conn, done))
            raise
        try:
            yield conn
        finally:
            await asyncio.shield(self._detached(conn.close()))

    async def close(self) -> None:
        """Waits for every checkout and return still running (their callers were cancelled)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _give_back(self, conn: AsyncConnection, taking: asyncio.Task[Any]) -> None:
        if not taking.cancelled() and taking.exception() is None:
            self._detached(conn.close())

    def _detached(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # a cancelled caller's failure is not "never retrieved"
