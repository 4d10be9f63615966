"""The ``Store`` on SQLite, the embedded default: SQLAlchemy Core over aiosqlite for reads and
the rarer writes, and the hot path's claim and outcome on the writer's thread
(``sqlite_writer.py``), which also gives every transaction of the process its turn.

SQLite has one writer at a time, so an ``UPDATE`` is itself an atomic claim. Every commit is
durable (``synchronous=FULL``, see ``engine.py``) but the claim's, whose frames the outcome's
commit flushes before any answer leaves. Driver errors become ``StorageUnavailable`` here and
nowhere else; a value the driver cannot bind (an integer past 64 bits) is the request's bad
input, ``ValidationFailed`` (422), as a data exception is on Postgres (``pg_pool.py``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import (
    String,
    and_,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import ColumnClause

from router_service.adapters.db import sqlite_statements as sql
from router_service.adapters.db.page_size import rows_that_fit
from router_service.adapters.db.records import (
    already_decoded,
    as_utc,
    log_cursor,
    log_cursor_bound,
    log_record,
    records_off_loop,
    text_column,
    utcnow,
)
from router_service.adapters.db.sqlite_checkout import Checkouts
from router_service.adapters.db.sqlite_dead_letters import SqliteDeadLetters
from router_service.adapters.db.sqlite_replay_jobs import as_stored
from router_service.adapters.db.sqlite_writer import SqliteWriter
from router_service.adapters.db.tables import (
    dead_letters,
    idempotency_keys,
    signal_by_key,
    signal_leases,
    signals,
)
from router_service.domain.errors import (
    Overloaded,
    StorageError,
    StorageUnavailable,
    ValidationFailed,
)
from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import Plan
from router_service.domain.signal import Signal
from router_service.service.ports import Events
from router_service.service.records import Claim, LogQuery, LogRecord, Page, Pruned, PrunePosition

T = TypeVar("T")


class SqliteStore(SqliteDeadLetters):
    """The ``Store`` protocol on SQLite: the log here, dead letters in ``sqlite_dead_letters.py``,
    replay jobs in ``sqlite_replay_jobs.py``."""

    def __init__(
        self, engine: AsyncEngine, writer: SqliteWriter, events: Events, pool_size: int
    ) -> None:
        self._engine = engine
        self._writer = writer  # the process's writes, one at a time (``sqlite_writer.py``)
        self._events = events
        self._pool_size = pool_size
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._checkouts = Checkouts()  # safe to cancel (``sqlite_checkout.py``)
        events.db_pool(size=pool_size)

    async def close(self) -> None:
        self._events.db_pool(size=-self._pool_size)
        await self._writer.close()
        await self._checkouts.close()
        await self._engine.dispose()

    @asynccontextmanager
    async def _connect(
        self, operation: str, *, transaction: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; ``transaction`` for work that must commit together (in its
        turn among the process's writes), autocommit otherwise (reads)."""
        async with self._call(operation):
            if transaction:
                async with (
                    self._writer.turn(),
                    self._checkouts.connect(self._engine) as conn,
                    conn.begin(),
                ):
                    yield conn
            else:
                async with self._checkouts.connect(self._autocommit) as conn:
                    yield conn

    async def _write(
        self, operation: str, work: Callable[[Connection], T], *, durable: bool = True
    ) -> T:
        """``work`` in a transaction on the writer's thread (the hot path's writes)."""
        async with self._call(operation, pooled=False):
            return await self._writer.run(work, durable=durable)

    @asynccontextmanager
    async def _call(self, operation: str, *, pooled: bool = True) -> AsyncIterator[None]:
        """Times the call; driver errors become the store's here and nowhere else. A ``pooled``
        call counts as a pool connection in use (the writer's connection is not the pool's)."""
        started = time.perf_counter()
        ok = False
        in_use = 1 if pooled else 0
        self._events.db_pool(in_use=in_use)
        try:
            yield
            ok = True
        except PoolTimeout as exc:
            raise Overloaded("every database connection is busy; retry shortly") from exc
        except OverflowError as exc:
            # sqlite3 binds integers as 64-bit: a larger one is refused before any statement.
            raise ValidationFailed(
                "a number of this request is out of the database's range (64-bit integers)"
            ) from exc
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise StorageUnavailable("the database is unavailable; try again shortly") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error during {operation}") from exc
        finally:
            self._events.db_pool(in_use=-in_use)
            self._events.db_call(
                operation=operation, latency_s=time.perf_counter() - started, ok=ok
            )

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self._connect("ping") as conn:
            await conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000

    async def schema_revision(self) -> str | None:
        async with self._connect("schema_revision") as conn:
            try:
                result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:
                return None
            return result.scalar_one_or_none()

    async def maintenance_warnings(self) -> list[str]:
        return []  # SQLite reuses a deleted row's space itself: there is no vacuum to miss

    async def claim(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> Claim:
        """The key, the lease and the log row in one transaction, all or none."""
        now = utcnow()
        key = {"log_id": signal.log_id, "created_at": now}
        lease = {**key, "owner": lease_owner, "expires_at": now + timedelta(seconds=lease_s)}
        row = {
            **key,
            "sender_id": signal.sender_id,
            "payload_hash": signal.payload_hash,
            "payload": signal.payload_json,
            "metadata": signal.metadata,
            "signal_ts": signal.timestamp,
            "trace_id": trace_id,
            "kind": plan.kind,
            "rule": plan.rule,
            "mode": plan.mode.value,
            "routed_agents": plan.agent_names,
            "status": Status.IN_PROGRESS.value,
            "updated_at": now,
            "routing_version": plan.version or None,
        }

        run = self._writer.prepared.execute  # on the writer's thread (``sqlite_prepared.py``)

        def take(conn: Connection) -> bool:
            won = bool(run(conn, sql.TAKE_KEY, key).fetchall())
            if won:
                run(conn, sql.ADD_LEASE, lease)
                run(conn, sql.ADD_SIGNAL, row)
            return won

        # Not flushed by itself: the outcome's durable commit flushes it before any answer.
        if await self._write("claim", take, durable=False):
            return Claim(claimed_at=now)
        existing = await self.get(signal.log_id)
        if existing is None:  # pragma: no cover - rows are never deleted while claimed
            raise StorageError("claimed signal vanished")
        return Claim(record=existing)

    async def get(self, log_id: str) -> LogRecord | None:
        async with self._connect("get") as conn:
            row = (
                (await conn.execute(select(signals).where(signal_by_key(log_id))))
                .mappings()
                .first()
            )
        return log_record(row, already_decoded) if row is not None else None

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int | None:
        """The outcome, the lease's end and the dead letters in one transaction; returns dead
        letters created, None if the signal was finished already (the first outcome wins)."""
        now = utcnow()
        key = {"key_created_at": created_at, "key_log_id": log_id}
        finished = {
            **key,
            "new_status": outcome.status.value,
            "new_results": [r.as_dict() for r in outcome.results],
            "new_response": outcome.response,
            "new_latency_ms": latency_ms,
            "new_updated_at": now,
        }
        letters = [
            {
                "log_id": log_id,
                "agent": letter.agent or "",  # '' when the whole signal is parked
                "kind": plan.kind,
                "mode": plan.mode.value,
                "error": text_column(letter.error),
                "attempts": letter.attempts,
                "replay_count": 0,
                "status": "pending",
                "created_at": now,
                "last_attempt_at": now,
            }
            for letter in outcome.dead_letters
        ]

        run = self._writer.prepared.execute  # on the writer's thread (``sqlite_prepared.py``)

        def write(conn: Connection) -> int | None:
            run(conn, sql.END_LEASE, key)
            if run(conn, sql.FINISH_SIGNAL, finished).rowcount == 0:
                return None
            return sum(len(run(conn, sql.PARK, values).fetchall()) for values in letters)

        return await self._write("record", write)

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        conditions = []
        if query.sender_id is not None:
            conditions.append(signals.c.sender_id == query.sender_id)
        if query.kind is not None:
            conditions.append(signals.c.kind == query.kind)
        if query.status is not None:
            conditions.append(signals.c.status == query.status)
        if query.since is not None:
            conditions.append(signals.c.created_at >= as_utc(query.since))
        if query.until is not None:
            conditions.append(signals.c.created_at < as_utc(query.until))
        if query.cursor is not None:
            created, last_id = log_cursor_bound(query.cursor)
            conditions.append(
                or_(
                    signals.c.created_at < created,
                    and_(signals.c.created_at == created, signals.c.log_id < last_id),
                )
            )
        newest_first = (signals.c.created_at.desc(), signals.c.log_id.desc())
        row_bytes = (
            func.length(signals.c.payload)
            + func.length(signals.c.metadata)
            + func.coalesce(func.length(signals.c.results), 0)
            + func.coalesce(func.length(signals.c.response), 0)
        )
        sizes_of = select(signals.c.created_at, signals.c.log_id, row_bytes.label("row_bytes"))
        async with self._connect("list_logs") as conn:
            sizes = (
                await conn.execute(
                    sizes_of.where(*conditions).order_by(*newest_first).limit(query.limit + 1)
                )
            ).all()
            taken, more = rows_that_fit([r.row_bytes for r in sizes], query.limit)
            if not taken:
                return Page([], None)
            first, last = sizes[0], sizes[taken - 1]
            conditions.append(tuple_(signals.c.created_at, signals.c.log_id) <= tuple_(*first[:2]))
            conditions.append(tuple_(signals.c.created_at, signals.c.log_id) >= tuple_(*last[:2]))
            columns = as_stored(signals.c) if query.stored_json else signals.c
            statement = select(*columns).where(*conditions).order_by(*newest_first).limit(taken)
            found = await conn.execute(statement)
            items = await records_off_loop(found, log_record, query.stored_json)
        return Page(items, log_cursor(items[-1]) if more and items else None)

    async def reclaim_expired(self, owner: str, lease_s: float, limit: int) -> list[LogRecord]:
        """Take over signals whose owner died mid-flight (their lease expired)."""
        now = utcnow()
        expired = (
            select(signal_leases.c.log_id)
            .where(signal_leases.c.expires_at < now)
            .order_by(signal_leases.c.expires_at)
            .limit(limit)
        )
        take = (
            update(signal_leases)
            .where(signal_leases.c.log_id.in_(expired.scalar_subquery()))
            .where(signal_leases.c.expires_at < now)
            .values(owner=owner, expires_at=now + timedelta(seconds=lease_s))
            .returning(signal_leases.c.created_at, signal_leases.c.log_id)
        )
        async with self._connect("reclaim_expired", transaction=True) as conn:
            taken = [tuple(r) for r in (await conn.execute(take)).all()]
            if not taken:
                return []
            found = await conn.execute(
                select(signals).where(
                    tuple_(signals.c.created_at, signals.c.log_id).in_(taken),
                    signals.c.status == Status.IN_PROGRESS.value,
                )
            )
            return await records_off_loop(found, log_record)

    async def release_leases(self, owner: str) -> int:
        """On shutdown: what this process leaves unfinished is reclaimable at once elsewhere."""
        async with self._connect("release_leases", transaction=True) as conn:
            result = await conn.execute(
                update(signal_leases)
                .where(signal_leases.c.owner == owner)
                .values(expires_at=utcnow())
            )
            return int(result.rowcount)

    async def prune(
        self, older_than: datetime, batch: int = 1000, after: PrunePosition | None = None
    ) -> Pruned:
        """``Store.prune``. A pruned signal's key goes with it: the deduplication window
        equals the retention period."""
        pending = (
            select(dead_letters.c.log_id)
            .where(dead_letters.c.status == "pending")
            .where(dead_letters.c.log_id == signals.c.log_id)
        )
        # By rowid, and the position by the time's text: exact whatever text the time was
        # stored as, and no scan by ``log_id``. Every stored text sorts after ''.
        rowid: ColumnClause[int] = literal_column("signals.rowid")
        stored_at: ColumnClause[str] = literal_column("signals.created_at", String)
        since_at, since_id = after or ("", "")
        doomed = (
            select(rowid, signals.c.log_id, stored_at)
            .where(
                signals.c.created_at < as_utc(older_than),
                tuple_(stored_at, signals.c.log_id)
                > tuple_(literal(since_at, String), literal(since_id, String)),
                signals.c.status != Status.IN_PROGRESS.value,
                ~pending.exists(),
            )
            .order_by(stored_at, signals.c.log_id)
            .limit(batch)
        )
        async with self._connect("prune", transaction=True) as conn:
            picked = (await conn.execute(doomed)).all()
            ids = [log_id for _, log_id, _ in picked]
            if ids:
                await conn.execute(dead_letters.delete().where(dead_letters.c.log_id.in_(ids)))
                await conn.execute(signals.delete().where(rowid.in_([r for r, _, _ in picked])))
                keys = idempotency_keys.delete().where(idempotency_keys.c.log_id.in_(ids))
                await conn.execute(keys)
        last = (picked[-1][2], ids[-1]) if len(ids) == batch else None
        return Pruned(len(ids), last)
