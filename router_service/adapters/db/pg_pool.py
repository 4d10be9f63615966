"""The one asyncpg pool of a process, and the translation of driver errors into ours.

Every Postgres statement of the router runs on this pool: its size is the process's whole
connection budget (``DB_POOL_SIZE + DB_MAX_OVERFLOW``). Connections open on demand (the router
starts while the database is down) and stay open while used, so there is no reconnect churn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from router_service.adapters.db.pg_lane import PgLane
from router_service.domain.errors import Overloaded, StorageUnavailable, ValidationFailed
from router_service.service.ports import Events

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """What the pool needs to know, taken from ``Settings`` by the composition root."""

    dsn: str
    max_size: int
    connect_timeout_s: float
    statement_timeout_ms: int


def asyncpg_dsn(database_url: str) -> str:
    """asyncpg's spelling of the service's URL (which names the driver in its scheme)."""
    scheme, _, rest = database_url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else database_url


class PgPool:
    def __init__(self, settings: PoolSettings, events: Events) -> None:
        self._settings = settings
        self._events = events
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._lanes: list[PgLane] = []
        self._scans = asyncio.Semaphore(max(1, settings.max_size // 2))

    @asynccontextmanager
    async def scan(self) -> AsyncIterator[None]:
        """A slot for a read that may walk much of the log (a page of it or of the dead letters,
        filtered by a rare status; a replay's survey): at most half the pool's connections do,
        so that reads of ``logs:read`` clients cannot take every one. Twenty-five filtered
        pages at once took them all: ``/health`` waited 1.9 s, cheap reads got 503, and a
        replay job running in the background failed. Past ``DB_CONNECT_TIMEOUT_S`` in line, a
        503 ``overloaded``."""
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                await self._scans.acquire()
        except TimeoutError as exc:
            raise Overloaded("too many reads of the log at once; retry shortly") from exc
        try:
            yield
        finally:
            self._scans.release()

    async def close(self) -> None:
        for lane in self._lanes:
            await lane.close()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self._events.db_pool(size=-pool.get_max_size())
        try:
            # Graceful close waits for every connection to come back; a stuck one must not hold
            # up the process's exit.
            await asyncio.wait_for(pool.close(), timeout=5.0)
        except TimeoutError:
            pool.terminate()

    async def run(self, operation: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on a pooled connection, once."""
        async with self.connection(operation) as conn:
            return await work(conn)

    async def run_twice(
        self, operation: str, work: Callable[[Any], Awaitable[T]]
    ) -> tuple[T, bool]:
        """An idempotent ``work``, once more on a fresh connection if the pooled one turned out
        dead (a restarted or killed backend), instead of failing the request. Returns the
        result and whether it took the second try."""
        try:
            async with self.connection(operation) as conn:
                return await work(conn), False
        except StorageUnavailable:
            async with self.connection(operation) as conn:
                return await work(conn), True

    @asynccontextmanager
    async def connection(self, operation: str) -> AsyncIterator[Any]:
        started = time.perf_counter()
        ok = False
        try:
            pool, conn = await self.acquire()
            try:
                yield conn
                ok = True
            except BaseException:
                # Whatever broke mid-statement (a killed backend, a cancelled query, a protocol
                # state left behind), this connection must never be handed out again.
                conn.terminate()
                raise
            finally:
                await self.release(pool, conn)
        except (Overloaded, StorageUnavailable):
            raise
        except asyncpg.DataError as exc:
            # A value the database cannot take (a NUL in text, a number out of its range): the
            # request's data, not an outage. The edge refuses the ones it knows of first.
            raise ValidationFailed(
                f"the database refused a value of this request (SQLSTATE {exc.sqlstate})"
            ) from exc
        except Exception as exc:
            raise await self.unavailable(exc) from exc
        finally:
            self.called(operation, started, ok)

    def lane(self, operation: str) -> PgLane:
        """A connection of this pool kept for one writer that runs one statement at a time
        (a group commit), when the pool has room for it: see ``pg_lane.py``."""
        lane = PgLane(self, operation, pinned=self._settings.max_size - len(self._lanes) > 2)
        self._lanes.append(lane)
        return lane

    async def acquire(self) -> tuple[asyncpg.Pool, Any]:
        """A connection out of the pool (``release`` gives it back), counted as in use."""
        pool = self._pool or await self._open()
        # With a connection idle, acquiring cannot wait (and reconnecting has its own
        # timeout): asyncpg's timeout would only cost two timers per statement.
        timeout = None if pool.get_idle_size() else self._settings.connect_timeout_s
        try:
            conn = await pool.acquire(timeout=timeout)
        except TimeoutError as exc:
            # Either every connection is busy, or connecting itself timed out.
            if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
                raise Overloaded("every database connection is busy; retry shortly") from exc
            raise
        self._events.db_pool(in_use=1)
        return pool, conn

    async def release(self, pool: asyncpg.Pool, conn: Any) -> None:
        self._events.db_pool(in_use=-1)
        await pool.release(conn)

    def called(self, operation: str, started: float, ok: bool) -> None:
        self._events.db_call(operation=operation, latency_s=time.perf_counter() - started, ok=ok)

    async def unavailable(self, exc: Exception) -> StorageUnavailable:
        """Any driver error as ours. asyncpg also raises a bare ``InternalClientError`` for a
        connection whose backend was killed mid-protocol."""
        if (not isinstance(exc, asyncpg.PostgresError) or isinstance(
            exc, asyncpg.PostgresConnectionError
        )) and self._pool is not None:  # fmt: skip
            # The server restarted or dropped us: the idle connections are just as dead.
            await self._pool.expire_connections()
        return StorageUnavailable("the database is unavailable; try again shortly")

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is not None:
                return self._pool
            s = self._settings
            self._pool = await asyncpg.create_pool(
                s.dsn,
                min_size=0,  # connect on demand: the router starts while the database is down
                max_size=s.max_size,
                timeout=s.connect_timeout_s,
                command_timeout=s.statement_timeout_ms / 1000 + 1,
                server_settings={
                    # A stuck statement or lock cannot stall the router; pg_stat_activity
                    # names it.
                    "statement_timeout": str(s.statement_timeout_ms),
                    "lock_timeout": str(s.statement_timeout_ms),
                    "application_name": "router-service",
                },
                max_inactive_connection_lifetime=60.0,
                reset=_keep_session,
            )
            self._events.db_pool(size=s.max_size)
            return self._pool


async def _keep_session(_conn: Any) -> None:
    """Instead of asyncpg's reset query on every release (a round trip each time): the store's
    statements leave no session state behind (no cursors, LISTEN or SET; transactions are
    closed by their context manager), and a connection that failed mid-statement is
    terminated, never released."""


# SQLSTATE classes of errors about a statement's data, not about the database: a data exception
# (22), an integrity constraint (23), an error raised by a trigger or function (P0).
ROW_ERROR_CLASSES = ("22", "23", "P0")


def refused_rows(exc: Exception) -> bool:
    """Whether ``exc`` (as ``connection`` raises it) is the database refusing a statement's
    data: a batch that failed so is worth writing again row by row."""
    cause = exc.__cause__
    return isinstance(cause, asyncpg.PostgresError) and str(cause.sqlstate).startswith(
        ROW_ERROR_CLASSES
    )
