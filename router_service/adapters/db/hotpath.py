"""The two statements of every signal on Postgres, straight through asyncpg.

Every signal is claimed once and recorded once, so these two statements are most of the
router's database work. They skip SQLAlchemy (its pool checkout and expression compilation cost
more CPU than the statements themselves) and run as prepared statements on asyncpg pools of
their own:

- **claims** commit without waiting for their WAL flush (``synchronous_commit=off``). That is
  safe because no answer leaves before the outcome's commit, and that commit, synchronous,
  flushes the WAL up to and including the claim. Visibility to other connections, which is what
  idempotency needs, is immediate either way.
- **outcomes** are group-committed: the outcomes of concurrent requests go in one ``UPDATE``
  over arrays, one transaction, one WAL flush. Each request is still answered only after the
  commit that holds its row. Batches form by themselves: while one is being written, the next
  one gathers, so a lone request never waits for company.

Driver errors become ``StorageUnavailable`` (or ``Overloaded`` when every connection is busy),
as everywhere in the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from router_service.adapters.db.engine import session_settings
from router_service.config.settings import Settings
from router_service.domain.errors import Overloaded, StorageUnavailable
from router_service.service.ports import Events

PG_RECORD_MANY = """
UPDATE signals AS s
   SET status = v.status, results = v.results::jsonb, response = v.response::jsonb,
       latency_ms = v.latency_ms, lease_owner = NULL, lease_expires_at = NULL, updated_at = $6
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])
       AS v(log_id, status, results, response, latency_ms)
 WHERE s.log_id = v.log_id AND (s.status = 'in_progress') IS TRUE
"""
# ``IS TRUE`` keeps the status out of the index search: the row is found by its key alone. With
# a plain ``s.status = 'in_progress'`` the planner ANDs in the lease index on ``status``, whose
# entries for every signal ever claimed (until vacuum) it then walks: 9 ms instead of 0.2 ms
# per batch once the log holds half a million rows.

MAX_BATCH = 128


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One signal's outcome, serialised: JSON columns are already JSON text."""

    log_id: str
    status: str
    results: str
    response: str
    latency_ms: float


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class PgHotPath:
    """The claim pool, the outcome pool and the outcome batcher of one process."""

    def __init__(self, settings: Settings, events: Events) -> None:
        self._settings = settings
        self._events = events
        self._pools: dict[bool, asyncpg.Pool] = {}
        self._opening = asyncio.Lock()
        self._queue: list[tuple[OutcomeRow, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._writing = False  # a batch is being written (by a request or the writer task)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        for pool in self._pools.values():
            self._events.db_pool(size=-pool.get_max_size())
            try:
                # Graceful close waits for every connection to come back; a stuck one must not
                # hold up the process's exit.
                await asyncio.wait_for(pool.close(), timeout=5.0)
            except TimeoutError:
                pool.terminate()
        self._pools.clear()

    async def claim(self, statement: str, params: Sequence[Any]) -> tuple[Any, bool]:
        """``fetchval`` of an idempotent claim statement, and whether it had to be sent twice
        (then the first may have gone through before its connection died)."""
        return await self._twice("claim", False, lambda conn: conn.fetchval(statement, *params))

    async def record(self, row: OutcomeRow) -> None:
        """Returns once the commit holding ``row`` is durable."""
        if not self._writing:
            # Nobody is writing: write this row now, from this task (no task, no queue: the
            # one-request-at-a-time case pays nothing for batching). Rows that arrive
            # meanwhile queue up and go to a writer task as one batch.
            self._writing = True
            try:
                await self._write([row])
            finally:
                self._hand_over()
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)  # a cancelled waiter's failure is not "unretrieved"
        self._queue.append((row, done))
        await asyncio.shield(done)  # a cancelled request does not cancel its neighbours' commit

    def _hand_over(self) -> None:
        if self._queue:
            self._writer = asyncio.create_task(self._write_batches())
        else:
            self._writing = False

    async def _write_batches(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._write([row for row, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writing = False

    async def _write(self, rows: list[OutcomeRow]) -> None:
        # In key order: concurrent writers (other processes) lock rows in the same order.
        rows.sort(key=lambda r: r.log_id)
        columns = (
            [r.log_id for r in rows],
            [r.status for r in rows],
            [r.results for r in rows],
            [r.response for r in rows],
            [r.latency_ms for r in rows],
            datetime.now(UTC),
        )
        await self._twice("record", True, lambda conn: conn.execute(PG_RECORD_MANY, *columns))

    async def _twice(
        self, operation: str, durable: bool, run: Callable[[Any], Awaitable[Any]]
    ) -> tuple[Any, bool]:
        """Run an idempotent statement; once more on a fresh connection if the pooled one
        turned out dead (a restarted or killed backend), instead of failing the request.
        Returns the result and whether it took the second try."""
        try:
            async with self._connection(operation, durable) as conn:
                return await run(conn), False
        except StorageUnavailable:
            async with self._connection(operation, durable) as conn:
                return await run(conn), True

    @asynccontextmanager
    async def _connection(self, operation: str, durable: bool) -> AsyncIterator[Any]:
        started = time.perf_counter()
        ok = False
        pool = self._pools.get(durable) or await self._open(durable)
        try:
            try:
                conn = await pool.acquire(timeout=self._settings.db_connect_timeout_s)
            except TimeoutError as exc:
                # Either every connection is busy, or connecting itself timed out.
                if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
                    raise Overloaded("every database connection is busy; retry shortly") from exc
                raise
            self._events.db_pool(in_use=1)
            try:
                yield conn
                ok = True
            except BaseException:
                # Whatever broke mid-statement (a killed backend, a cancelled query, a protocol
                # state left behind), this connection must never be handed out again.
                conn.terminate()
                raise
            finally:
                self._events.db_pool(in_use=-1)
                await pool.release(conn)
        except (Overloaded, StorageUnavailable):
            raise
        except Exception as exc:
            if not isinstance(exc, asyncpg.PostgresError) or isinstance(
                exc, asyncpg.PostgresConnectionError
            ):
                # The server restarted or dropped us: the idle connections are just as dead.
                await pool.expire_connections()
            raise StorageUnavailable("the database is unavailable; try again shortly") from exc
        finally:
            self._events.db_call(
                operation=operation, latency_s=time.perf_counter() - started, ok=ok
            )

    async def _open(self, durable: bool) -> asyncpg.Pool:
        async with self._opening:
            pool = self._pools.get(durable)
            if pool is not None:
                return pool
            settings = self._settings
            server_settings = session_settings(settings)
            if not durable:
                server_settings["synchronous_commit"] = "off"
            pool = await asyncpg.create_pool(
                asyncpg_dsn(settings.database_url),
                min_size=0,  # connect on demand: the router starts while the database is down
                # Connections stay open (no churn past a pool size, unlike an overflow).
                max_size=settings.db_pool_size + settings.db_max_overflow,
                timeout=settings.db_connect_timeout_s,
                command_timeout=settings.db_statement_timeout_ms / 1000 + 1,
                server_settings=server_settings,
                max_inactive_connection_lifetime=60.0,
                reset=_keep_session,
            )
            self._pools[durable] = pool
            self._events.db_pool(size=pool.get_max_size())
            return pool


async def _keep_session(_conn: Any) -> None:
    """Instead of asyncpg's reset query on every release (a round trip each time): these two
    statements leave no session state behind (no locks, cursors, LISTEN or SET), and a
    connection that failed mid-statement is terminated, never released."""


def _retrieve(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()
