"""The store: every SQL statement the service runs, named, over SQLAlchemy Core.

Driver errors become ``StorageUnavailable`` here and nowhere else.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import RowMapping, Select, and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from router_service.adapters.db.engine import json_serializer
from router_service.adapters.db.hotpath import OutcomeRow, PgHotPath
from router_service.adapters.db.tables import dead_letters, idempotency_keys, signals
from router_service.domain.errors import (
    Overloaded,
    StorageError,
    StorageUnavailable,
    ValidationFailed,
)
from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import Plan
from router_service.domain.signal import Signal
from router_service.service.ports import (
    Claim,
    DeadLetterQuery,
    DeadLetterRecord,
    Events,
    LogQuery,
    LogRecord,
    Page,
    ReplayResult,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this server issued") from exc
    if not isinstance(parts, list) or len(parts) != arity:
        raise ValidationFailed("cursor is not one this server issued")
    return parts


def _log_record(row: RowMapping) -> LogRecord:
    return LogRecord(
        log_id=row["log_id"],
        trace_id=row["trace_id"],
        sender_id=row["sender_id"],
        payload_hash=row["payload_hash"],
        payload=json.loads(row["payload"]),  # exact: orjson would turn huge ints into floats
        metadata=row["metadata"],
        signal_ts=_aware(row["signal_ts"]) or utcnow(),
        kind=row["kind"],
        rule=row["rule"],
        mode=row["mode"],
        routed_agents=list(row["routed_agents"]),
        status=Status(row["status"]),
        results=row["results"],
        response=row["response"],
        latency_ms=row["latency_ms"],
        created_at=_aware(row["created_at"]) or utcnow(),
        updated_at=_aware(row["updated_at"]) or utcnow(),
    )


def _dead_letter_record(row: RowMapping) -> DeadLetterRecord:
    return DeadLetterRecord(
        id=row["id"],
        log_id=row["log_id"],
        agent=row["agent"] or None,
        kind=row["kind"],
        mode=row["mode"],
        payload=json.loads(row["payload"]),
        error=row["error"],
        attempts=row["attempts"],
        replay_count=row["replay_count"],
        status=row["status"],
        created_at=_aware(row["created_at"]) or utcnow(),
        last_attempt_at=_aware(row["last_attempt_at"]),
        sender_id=row["sender_id"],
        metadata=row["metadata"],
        signal_ts=_aware(row["signal_ts"]),
        trace_id=row["trace_id"],
    )


_DLQ_COLUMNS = (
    *dead_letters.c,
    signals.c.payload,
    signals.c.sender_id,
    signals.c.metadata,
    signals.c.signal_ts,
    signals.c.trace_id,
)


# The claim, in Postgres's own dialect, run by the hot path (``hotpath.py``) as a prepared
# statement. It takes the key first and writes the log row only if the key was new: one
# statement, so one implicit transaction and one round trip. The key table, not the log, holds
# uniqueness, which leaves ``signals`` free to be partitioned by ``created_at``. Postgres types
# the SELECT list's parameters from the columns they are inserted into, as it did for VALUES.
PG_CLAIM = """
WITH claimed AS (
    INSERT INTO idempotency_keys (log_id, created_at) VALUES ($1, $14)
    ON CONFLICT (log_id) DO NOTHING
    RETURNING log_id
)
INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, trace_id,
                     kind, rule, mode, routed_agents, status, lease_owner, lease_expires_at,
                     created_at, updated_at)
SELECT log_id, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11::jsonb, 'in_progress', $12, $13,
       $14, $14
  FROM claimed
RETURNING log_id
"""


class SqlStore:
    """The ``Store`` protocol on Postgres or SQLite."""

    def __init__(self, engine: AsyncEngine, events: Events, hot: PgHotPath | None = None) -> None:
        """``hot``: on Postgres, the claim and the outcome go through it (asyncpg pools and
        group commit); without it every statement goes through SQLAlchemy."""
        self._engine = engine
        self._events = events
        self._dialect = engine.dialect.name
        self._hot = hot if self._dialect == "postgresql" else None
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert

    async def close(self) -> None:
        if self._hot is not None:
            await self._hot.close()

    @asynccontextmanager
    async def _connect(
        self, operation: str, *, transaction: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; ``transaction`` for work that must commit together, autocommit
        otherwise (one statement, one round trip: no BEGIN, COMMIT or ROLLBACK around it)."""
        started = time.perf_counter()
        ok = False
        try:
            ctx: AbstractAsyncContextManager[AsyncConnection] = (
                self._engine.begin() if transaction else self._autocommit.connect()
            )
            async with ctx as conn:
                yield conn
            ok = True
        except PoolTimeout as exc:
            raise Overloaded("every database connection is busy; retry shortly") from exc
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise StorageUnavailable("the database is unavailable; try again shortly") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error during {operation}") from exc
        finally:
            self._events.db_call(
                operation=operation, latency_s=time.perf_counter() - started, ok=ok
            )

    def _pick(self, rows: Select[Any]) -> Any:
        """Rows for one claimer. On Postgres: locked, skipping rows others hold, and picked
        once in a materialized CTE — an ``IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)``
        subquery may be re-run by the planner and claim more than ``n`` rows."""
        if self._dialect != "postgresql":
            return rows.scalar_subquery()
        picked = rows.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        return select(picked.c[0]).scalar_subquery()

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

    async def claim(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> Claim:
        """Take the idempotency key and insert the log row as ``in_progress``, both or neither;
        the key's primary key makes the claim atomic."""
        if self._hot is not None:
            won, retried = await self._claim_hot(
                self._hot, signal, plan, trace_id, lease_owner, lease_s
            )
        else:
            won, retried = (
                await self._claim_sql(signal, plan, trace_id, lease_owner, lease_s),
                False,
            )
        if won:
            return Claim()
        existing = await self.get(signal.log_id)
        if existing is None:  # pragma: no cover - rows are never deleted while claimed
            raise StorageError("claimed signal vanished")
        if retried and existing.trace_id == trace_id and existing.status is Status.IN_PROGRESS:
            return Claim()  # our own first try went through before its connection died
        return Claim(record=existing)

    async def _claim_sql(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> bool:
        """Both inserts in one transaction; True when the key was new."""
        now = utcnow()
        take_key = (
            self._insert(idempotency_keys)
            .values(log_id=signal.log_id, created_at=now)
            .on_conflict_do_nothing(index_elements=["log_id"])
            .returning(idempotency_keys.c.log_id)
        )
        row = signals.insert().values(
            log_id=signal.log_id,
            sender_id=signal.sender_id,
            payload_hash=signal.payload_hash,
            payload=signal.payload_json,
            metadata=signal.metadata,
            signal_ts=signal.timestamp,
            trace_id=trace_id,
            kind=plan.kind,
            rule=plan.rule,
            mode=plan.mode.value,
            routed_agents=plan.agent_names,
            status=Status.IN_PROGRESS.value,
            lease_owner=lease_owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            created_at=now,
            updated_at=now,
        )
        async with self._connect("claim", transaction=True) as conn:
            if (await conn.execute(take_key)).first() is None:
                return False
            await conn.execute(row)
            return True

    async def _claim_hot(
        self,
        hot: PgHotPath,
        signal: Signal,
        plan: Plan,
        trace_id: str,
        lease_owner: str,
        lease_s: float,
    ) -> tuple[bool, bool]:
        """One prepared statement; whether the key was new, and whether it took a second try."""
        now = utcnow()
        params = (
            signal.log_id,
            signal.sender_id,
            signal.payload_hash,
            signal.payload_json,
            json_serializer(signal.metadata),
            signal.timestamp,
            trace_id,
            plan.kind,
            plan.rule,
            plan.mode.value,
            json_serializer(plan.agent_names),
            lease_owner,
            now + timedelta(seconds=lease_s),
            now,
        )
        inserted, retried = await hot.claim(PG_CLAIM, params)
        return inserted is not None, retried

    async def get(self, log_id: str) -> LogRecord | None:
        async with self._connect("get") as conn:
            row = (
                (await conn.execute(select(signals).where(signals.c.log_id == log_id)))
                .mappings()
                .first()
            )
        return _log_record(row) if row is not None else None

    async def record(self, log_id: str, plan: Plan, outcome: Outcome, latency_ms: float) -> int:
        """The outcome and its dead letters in one transaction; returns dead letters created."""
        now = utcnow()
        if self._hot is not None and not outcome.dead_letters:
            written = OutcomeRow(
                log_id,
                outcome.status.value,
                json_serializer([r.as_dict() for r in outcome.results]),
                json_serializer(outcome.response),
                latency_ms,
            )
            await self._hot.record(written)  # group-committed with its concurrent neighbours
            return 0
        async with self._connect("record", transaction=bool(outcome.dead_letters)) as conn:
            updated = await conn.execute(
                update(signals)
                # The first final outcome wins (a reclaimed signal may be finished twice). The
                # status test is kept out of the index search, as in hotpath.PG_RECORD_MANY.
                .where(
                    signals.c.log_id == log_id,
                    (signals.c.status == Status.IN_PROGRESS.value).is_(True),
                )
                .values(
                    status=outcome.status.value,
                    results=[r.as_dict() for r in outcome.results],
                    response=outcome.response,
                    latency_ms=latency_ms,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            if not outcome.dead_letters or updated.rowcount == 0:
                return 0
            rows = [
                {
                    "log_id": log_id,
                    "agent": letter.agent or "",
                    "kind": plan.kind,
                    "mode": plan.mode.value,
                    "error": letter.error,
                    "attempts": letter.attempts,
                    "replay_count": 0,
                    "status": "pending",
                    "created_at": now,
                    "last_attempt_at": now,
                }
                for letter in outcome.dead_letters
            ]
            statement = (
                self._insert(dead_letters)
                .on_conflict_do_nothing(index_elements=["log_id", "agent"])
                .returning(dead_letters.c.id)
            )
            created = 0
            for row in rows:
                created += len((await conn.execute(statement.values(**row))).all())
            return created

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        conditions = []
        if query.sender_id is not None:
            conditions.append(signals.c.sender_id == query.sender_id)
        if query.kind is not None:
            conditions.append(signals.c.kind == query.kind)
        if query.status is not None:
            conditions.append(signals.c.status == query.status)
        if query.since is not None:
            conditions.append(signals.c.created_at >= _utc(query.since))
        if query.until is not None:
            conditions.append(signals.c.created_at < _utc(query.until))
        if query.cursor is not None:
            created_iso, last_id = decode_cursor(query.cursor, 2)
            try:
                created = datetime.fromisoformat(created_iso)
            except (TypeError, ValueError) as exc:
                raise ValidationFailed("cursor is not one this server issued") from exc
            conditions.append(
                or_(
                    signals.c.created_at < created,
                    and_(signals.c.created_at == created, signals.c.log_id < last_id),
                )
            )
        statement = (
            select(signals)
            .where(*conditions)
            .order_by(signals.c.created_at.desc(), signals.c.log_id.desc())
            .limit(query.limit + 1)
        )
        async with self._connect("list_logs") as conn:
            rows = (await conn.execute(statement)).mappings().all()
        items = [_log_record(r) for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = encode_cursor(_utc(last.created_at).isoformat(), last.log_id)
        return Page(items, next_cursor)

    async def list_dead_letters(self, query: DeadLetterQuery) -> Page[DeadLetterRecord]:
        conditions = []
        if query.status is not None:
            conditions.append(dead_letters.c.status == query.status)
        if query.agent is not None:
            conditions.append(dead_letters.c.agent == query.agent)
        if query.kind is not None:
            conditions.append(dead_letters.c.kind == query.kind)
        if query.cursor is not None:
            (after,) = decode_cursor(query.cursor, 1)
            if not isinstance(after, int) or not 0 <= after < 2**63:
                raise ValidationFailed("cursor is not one this server issued")
            conditions.append(dead_letters.c.id > after)
        statement = (
            select(*_DLQ_COLUMNS)
            .join(signals, signals.c.log_id == dead_letters.c.log_id)
            .where(*conditions)
            .order_by(dead_letters.c.id)
            .limit(query.limit + 1)
        )
        async with self._connect("list_dead_letters") as conn:
            rows = (await conn.execute(statement)).mappings().all()
        items = [_dead_letter_record(r) for r in rows[: query.limit]]
        next_cursor = encode_cursor(items[-1].id) if len(rows) > query.limit else None
        return Page(items, next_cursor)

    async def claim_dead_letters(
        self,
        *,
        limit: int | None,
        ids: Sequence[int] | None,
        owner: str,
        lease_s: float,
        due_only: bool = False,
        after_id: int | None = None,
    ) -> list[DeadLetterRecord]:
        """Claim pending entries for one replayer; a claim expires if its replayer dies.

        Postgres skips rows another replayer holds (``FOR UPDATE SKIP LOCKED``); SQLite has one
        writer at a time, so the UPDATE itself is the atomic claim.
        """
        now = utcnow()
        claimable = and_(
            dead_letters.c.status == "pending",
            or_(dead_letters.c.claim_expires_at.is_(None), dead_letters.c.claim_expires_at < now),
        )
        if due_only:
            claimable = and_(
                claimable,
                or_(
                    dead_letters.c.next_attempt_at.is_(None), dead_letters.c.next_attempt_at <= now
                ),
            )
        if after_id is not None:
            claimable = and_(claimable, dead_letters.c.id > after_id)
        candidates = select(dead_letters.c.id).where(claimable).order_by(dead_letters.c.id)
        if ids is not None:
            candidates = candidates.where(dead_letters.c.id.in_(list(ids)))
        if limit is not None:
            candidates = candidates.limit(limit)
        claim = (
            update(dead_letters)
            .where(dead_letters.c.id.in_(self._pick(candidates)), claimable)
            .values(claimed_by=owner, claim_expires_at=now + timedelta(seconds=lease_s))
            .returning(dead_letters.c.id)
        )
        async with self._connect("claim_dead_letters", transaction=True) as conn:
            claimed = [r[0] for r in (await conn.execute(claim)).all()]
            if not claimed:
                return []
            rows = (
                (
                    await conn.execute(
                        select(*_DLQ_COLUMNS)
                        .join(signals, signals.c.log_id == dead_letters.c.log_id)
                        .where(dead_letters.c.id.in_(claimed))
                        .order_by(dead_letters.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return [_dead_letter_record(r) for r in rows]

    async def finish_replay(
        self,
        entry: DeadLetterRecord,
        result: ReplayResult,
        max_replays: int,
        retry_in_s: float = 0.0,
    ) -> str:
        """Mark the entry and bring the signal's status up to date; returns the entry's status.

        A replay that called no agent (its circuit was open) spends nothing: the entry stays
        pending with its count and error, released, and due again in ``retry_in_s``."""
        now = utcnow()
        if not result.attempted:
            async with self._connect("finish_replay") as conn:
                await conn.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == entry.id)
                    .values(
                        next_attempt_at=now + timedelta(seconds=retry_in_s),
                        claimed_by=None,
                        claim_expires_at=None,
                    )
                )
            return "pending"
        replay_count = entry.replay_count + 1
        if result.ok:
            status = "replayed"
        else:
            status = "exhausted" if replay_count >= max_replays else "pending"
        async with self._connect("finish_replay", transaction=True) as conn:
            await conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == entry.id)
                .values(
                    status=status,
                    replay_count=replay_count,
                    error=result.error or entry.error,
                    last_attempt_at=now,
                    next_attempt_at=now + timedelta(seconds=retry_in_s),
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )
            if result.ok:
                await self._after_successful_replay(conn, entry, result, now)
        return status

    async def _after_successful_replay(
        self, conn: AsyncConnection, entry: DeadLetterRecord, result: ReplayResult, now: datetime
    ) -> None:
        row = (
            (
                await conn.execute(
                    select(signals.c.response, signals.c.results).where(
                        signals.c.log_id == entry.log_id
                    )
                )
            )
            .mappings()
            .one()
        )
        outstanding = (
            await conn.execute(
                select(func.count())
                .select_from(dead_letters)
                .where(dead_letters.c.log_id == entry.log_id, dead_letters.c.status != "replayed")
            )
        ).scalar_one()
        response: Any = result.response
        results = list(result.results)
        if entry.agent is not None:
            # One agent of an aggregate fan-out: merge its answer into the stored one.
            response = dict(row["response"] or {})
            response[entry.agent] = result.response
            results = [r for r in row["results"] or [] if r.get("agent") != entry.agent]
            results.extend(result.results)
        await conn.execute(
            update(signals)
            .where(signals.c.log_id == entry.log_id)
            .values(
                status=(Status.DELIVERED if outstanding == 0 else Status.PARTIAL).value,
                response=response,
                results=results,
                updated_at=now,
            )
        )

    async def reclaim_expired(self, owner: str, lease_s: float, limit: int) -> list[LogRecord]:
        """Take over signals whose owner died mid-flight (their lease expired)."""
        now = utcnow()
        expired = (
            select(signals.c.log_id)
            .where(
                signals.c.status == Status.IN_PROGRESS.value,
                signals.c.lease_expires_at < now,
            )
            .order_by(signals.c.lease_expires_at)
            .limit(limit)
        )
        claim = (
            update(signals)
            .where(
                signals.c.log_id.in_(self._pick(expired)),
                signals.c.status == Status.IN_PROGRESS.value,
                signals.c.lease_expires_at < now,
            )
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(*signals.c)
        )
        async with self._connect("reclaim_expired", transaction=True) as conn:
            rows = (await conn.execute(claim)).mappings().all()
        return [_log_record(r) for r in rows]

    async def release_leases(self, owner: str) -> int:
        """On shutdown: what this process leaves unfinished is reclaimable at once elsewhere."""
        async with self._connect("release_leases", transaction=True) as conn:
            result = await conn.execute(
                update(signals)
                .where(
                    signals.c.lease_owner == owner,
                    signals.c.status == Status.IN_PROGRESS.value,
                )
                .values(lease_expires_at=utcnow())
            )
            return int(result.rowcount)

    async def prune(self, older_than: datetime, batch: int = 1000) -> int:
        """Delete one batch of finished signals created before ``older_than`` (with their
        settled dead letters and their idempotency keys); returns how many signals went.
        Signals still in flight or with a pending dead letter are kept. Run it until it
        returns 0.

        A pruned signal's key goes with it, so the deduplication window equals the retention
        period: a copy of a signal that arrives after its signal was pruned is claimed and
        dispatched anew. A key kept without its log row would have no stored answer to give."""
        pending = (
            select(dead_letters.c.log_id)
            .where(dead_letters.c.status == "pending")
            .where(dead_letters.c.log_id == signals.c.log_id)
        )
        doomed = (
            select(signals.c.log_id)
            .where(
                signals.c.created_at < _utc(older_than),
                signals.c.status != Status.IN_PROGRESS.value,
                ~pending.exists(),
            )
            .order_by(signals.c.created_at)
            .limit(batch)
        )
        async with self._connect("prune", transaction=True) as conn:
            ids = [r[0] for r in (await conn.execute(doomed)).all()]
            if not ids:
                return 0
            await conn.execute(dead_letters.delete().where(dead_letters.c.log_id.in_(ids)))
            await conn.execute(signals.delete().where(signals.c.log_id.in_(ids)))
            await conn.execute(idempotency_keys.delete().where(idempotency_keys.c.log_id.in_(ids)))
        return len(ids)

    async def dlq_backlog(self) -> int:
        async with self._connect("dlq_backlog") as conn:
            count = await conn.execute(
                select(func.count())
                .select_from(dead_letters)
                .where(dead_letters.c.status == "pending")
            )
            return int(count.scalar_one())
