"""The ``Store`` on Postgres: asyncpg on one pool, the statements of ``pg_statements.py``.

The claim and the outcome, which every signal runs, are prepared statements (asyncpg caches them
per connection); outcomes without dead letters are group-committed. Driver errors become
``StorageUnavailable`` (or ``Overloaded``) in ``pg_pool.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from router_service.adapters.db import pg_statements as sql
from router_service.adapters.db.group_commit import GroupCommit
from router_service.adapters.db.page_size import rows_that_fit
from router_service.adapters.db.pg_claims import PgClaims
from router_service.adapters.db.pg_pool import PgPool, refused_rows
from router_service.adapters.db.pg_replay_jobs import PgReplayJobs
from router_service.adapters.db.pg_sweep import WALK_FROM_BOTTOM, SweepFloor
from router_service.adapters.db.records import (
    as_utc,
    dead_letter_record,
    decode_json_text,
    encode_cursor,
    id_cursor_bound,
    json_column,
    log_cursor,
    log_cursor_bound,
    log_record,
    merged_replay,
    replayed_entry,
    text_column,
    utcnow,
)
from router_service.domain.errors import StorageError
from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import Plan
from router_service.domain.signal import Signal
from router_service.page_work import off_loop
from router_service.service.records import (
    SUPERSEDED,
    Claim,
    DeadLetterQuery,
    DeadLetterRecord,
    LogQuery,
    LogRecord,
    Page,
    Pruned,
    PrunePosition,
    ReplayResult,
)

# Before every key of the log: where the first batch of a prune starts.
_PRUNE_START: PrunePosition = (datetime.min.replace(tzinfo=UTC), "")


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """The parameters of ``pg_statements.RECORD`` for one signal; JSON already as text."""

    log_id: str
    created_at: datetime
    status: str
    results: str
    response: str
    latency_ms: float
    updated_at: datetime


class PgStore(PgReplayJobs):
    """The ``Store`` protocol on Postgres (replay jobs in ``pg_replay_jobs.py``)."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._claims = PgClaims(pool)
        self._outcome_lane = pool.lane("record")  # the batches run one at a time
        self._outcomes: GroupCommit[OutcomeRow, bool] = GroupCommit(
            self._write_outcomes, self._write_outcome, isolate=refused_rows
        )
        self._sweep_floor = SweepFloor()

    async def close(self) -> None:
        await self._claims.close()
        await self._outcomes.close()
        await self._pool.close()

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._pool.run("ping", lambda conn: conn.fetchval(sql.PING))
        return (time.perf_counter() - started) * 1000

    async def schema_revision(self) -> str | None:
        async def read(conn: Any) -> str | None:
            try:
                return await conn.fetchval(sql.SCHEMA_REVISION)  # type: ignore[no-any-return]
            except asyncpg.UndefinedTableError:
                return None

        return await self._pool.run("schema_revision", read)

    async def maintenance_warnings(self) -> list[str]:
        row = await self._pool.run(
            "maintenance", lambda conn: conn.fetchrow(sql.MAINTENANCE_SETTINGS)
        )
        return unreclaimed_space(autovacuum=row[0], track_counts=row[1])

    async def claim(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> Claim:
        """Take the idempotency key, the lease and the log row as ``in_progress``, all or none;
        the key's primary key makes the claim atomic."""
        now = self._claims.instant()
        params = (
            signal.log_id,
            signal.sender_id,
            signal.payload_hash,
            signal.payload_json,
            json_column(signal.metadata),
            signal.timestamp,
            trace_id,
            plan.kind,
            plan.rule,
            plan.mode.value,
            json_column(plan.agent_names),
            lease_owner,
            now + timedelta(seconds=lease_s),
            now,
            plan.version or None,
        )
        write = await self._claims.claim(params)  # group-committed with its concurrent neighbours
        if write.took_key:
            return Claim(claimed_at=now)
        existing = await self.get(signal.log_id)
        if existing is None:  # pragma: no cover - rows are never deleted while claimed
            raise StorageError("claimed signal vanished")
        if (
            write.retried
            and existing.status is Status.IN_PROGRESS
            and existing.created_at == now
            and await self._claims.was_ours(signal.log_id, now, lease_owner)
        ):
            # Our own first try went through before its connection died.
            return Claim(claimed_at=now)
        return Claim(record=existing)

    async def get(self, log_id: str) -> LogRecord | None:
        row = await self._pool.run("get", lambda conn: conn.fetchrow(sql.GET, log_id))
        return log_record(row, decode_json_text) if row is not None else None

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int | None:
        """The outcome and its dead letters in one transaction; returns dead letters created,
        None if the signal was finished already (the first outcome wins)."""
        row = OutcomeRow(
            log_id,
            created_at,
            outcome.status.value,
            json_column([r.as_dict() for r in outcome.results]),
            json_column(outcome.response),
            latency_ms,
            utcnow(),
        )
        if not outcome.dead_letters:
            # Group-committed with its concurrent neighbours.
            return 0 if await self._outcomes.submit(row) else None
        letters = [
            (
                log_id,
                letter.agent or "",  # '' when the whole signal is parked
                plan.kind,
                plan.mode.value,
                text_column(letter.error),
                letter.attempts,
                row.updated_at,
            )
            for letter in outcome.dead_letters
        ]

        async def write(conn: Any) -> int | None:
            async with conn.transaction():
                if await conn.fetchval(sql.RECORD, *_outcome_params(row)) is None:
                    return None  # finished already: the first outcome wins, with its dead letters
                created = 0
                for letter in letters:
                    created += await conn.fetchval(sql.INSERT_DEAD_LETTER, *letter) is not None
                return created

        created, _ = await self._pool.run_twice("record", write)
        return created

    async def _write_outcomes(self, rows: list[OutcomeRow]) -> list[bool]:
        """Whether each row's outcome was written (its signal was still in progress)."""
        # In key order: concurrent writers (other processes) lock rows in the same order.
        params = [_outcome_params(r) for r in sorted(rows, key=lambda r: r.log_id)]
        written, _ = await self._outcome_lane.run_twice(
            lambda conn: conn.fetchmany(sql.RECORD, params)
        )
        finished = {r[0] for r in written}
        return [r.log_id in finished for r in rows]

    async def _write_outcome(self, row: OutcomeRow) -> bool:
        params = _outcome_params(row)
        written, _ = await self._outcome_lane.run_twice(
            lambda conn: conn.fetchval(sql.RECORD, *params)
        )
        return written is not None

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        async with self._pool.scan():
            return await self._list_logs(query)

    async def _list_logs(self, query: LogQuery) -> Page[LogRecord]:
        where = sql.Filters()
        if query.sender_id is not None:
            where.add("s.sender_id = {0}", query.sender_id)
        if query.kind is not None:
            where.add("s.kind = {0}", query.kind)
        if query.status is not None:
            where.add("s.status = {0}", query.status)
        if query.since is not None:
            where.add("s.created_at >= {0}", as_utc(query.since))
        if query.until is not None:
            where.add("s.created_at < {0}", as_utc(query.until))
        if query.cursor is not None:
            created, last_id = log_cursor_bound(query.cursor)
            where.add("(s.created_at, s.log_id) < ({0}, {1})", created, last_id)
        tail = sql.LIST_LOGS_TAIL.format(limit=int(query.limit) + 1)
        sizes = await self._pool.run(
            "list_logs",
            lambda conn: conn.fetch(sql.LIST_LOGS_SIZES_HEAD + where.text + tail, *where.params),
        )
        taken, more = rows_that_fit([r["row_bytes"] for r in sizes], query.limit)
        if not taken:
            return Page([], None)
        first, last = sizes[0], sizes[taken - 1]
        where.add("(s.created_at, s.log_id) <= ({0}, {1})", first["created_at"], first["log_id"])
        where.add("(s.created_at, s.log_id) >= ({0}, {1})", last["created_at"], last["log_id"])
        statement = sql.LIST_LOGS_HEAD + where.text + sql.LIST_LOGS_TAIL.format(limit=taken)
        rows = await self._pool.run("list_logs", lambda conn: conn.fetch(statement, *where.params))
        stored = query.stored_json
        items = await off_loop(lambda: [log_record(r, decode_json_text, stored) for r in rows])
        return Page(items, log_cursor(items[-1]) if more and items else None)

    async def list_dead_letters(self, query: DeadLetterQuery) -> Page[DeadLetterRecord]:
        async with self._pool.scan():
            return await self._list_dead_letters(query)

    async def _list_dead_letters(self, query: DeadLetterQuery) -> Page[DeadLetterRecord]:
        where = sql.Filters()
        if query.status is not None:
            where.add("d.status = {0}", query.status)
        if query.agent is not None:
            where.add("d.agent = {0}", query.agent)
        if query.kind is not None:
            where.add("d.kind = {0}", query.kind)
        if query.log_id is not None:
            where.add("d.log_id = {0}", query.log_id)
        if query.ids is not None:
            where.add("d.id = ANY({0}::bigint[])", list(query.ids))
        if query.cursor is not None:
            where.add("d.id > {0}", id_cursor_bound(query.cursor))
        tail = sql.LIST_DEAD_LETTERS_TAIL.format(limit=int(query.limit) + 1)
        sizes = await self._pool.run(
            "list_dead_letters",
            lambda conn: conn.fetch(
                sql.LIST_DEAD_LETTERS_SIZES_HEAD + where.text + tail, *where.params
            ),
        )
        taken, more = rows_that_fit([r["row_bytes"] for r in sizes], query.limit)
        if not taken:
            return Page([], None)
        where.add("d.id BETWEEN {0} AND {1}", sizes[0]["id"], sizes[taken - 1]["id"])
        statement = (
            sql.LIST_DEAD_LETTERS_HEAD + where.text + sql.LIST_DEAD_LETTERS_TAIL.format(limit=taken)
        )
        rows = await self._pool.run(
            "list_dead_letters", lambda conn: conn.fetch(statement, *where.params)
        )
        stored = query.stored_json
        items = await off_loop(
            lambda: [dead_letter_record(r, decode_json_text, stored) for r in rows]
        )
        return Page(items, encode_cursor(items[-1].id) if more and items else None)

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
        """Claim pending entries for one replayer (``FOR UPDATE SKIP LOCKED``); a claim expires
        if its replayer dies."""
        now = utcnow()
        where = sql.Filters(first_param=4)
        if due_only:
            where.add("(next_attempt_at IS NULL OR next_attempt_at <= {0})", now)
        if after_id is not None:
            where.add("id > {0}", after_id)
        if ids is not None:
            where.add("id = ANY({0}::bigint[])", list(ids))
        statement = sql.CLAIM_DEAD_LETTERS.format(
            filters=where.text,
            limit=f"LIMIT {int(limit)}" if limit is not None else "",
            columns=sql.DEAD_LETTER_COLUMNS,
            signal=sql.SIGNAL_OF_DEAD_LETTER,
        )
        params = (now, owner, now + timedelta(seconds=lease_s), *where.params)
        rows = await self._pool.run(
            "claim_dead_letters", lambda conn: conn.fetch(statement, *params)
        )
        return await off_loop(lambda: [dead_letter_record(r, decode_json_text) for r in rows])

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
        due = now + timedelta(seconds=retry_in_s)
        claim = (entry.id, entry.claimed_by, entry.claim_expires_at)
        if not result.attempted:
            done = await self._pool.run(
                "finish_replay", lambda conn: conn.execute(sql.DEFER_REPLAY, *claim, due)
            )
            return "pending" if done == "UPDATE 1" else SUPERSEDED
        status, replay_count = replayed_entry(entry, result.ok, max_replays)
        params = (*claim, status, replay_count, text_column(result.error or entry.error), now, due)

        async def write(conn: Any) -> str:
            async with conn.transaction():
                if not result.ok:
                    done = await conn.execute(sql.FINISH_REPLAY, *params, False)
                    return status if done == "UPDATE 1" else SUPERSEDED
                signal = await conn.fetchrow(sql.REPLAYED_SIGNAL, entry.log_id)  # locked first
                if await conn.execute(sql.FINISH_REPLAY, *params, True) != "UPDATE 1":
                    return SUPERSEDED
                await self._after_successful_replay(conn, entry, signal, result, now)
                return status

        written: str = await self._pool.run("finish_replay", write)
        return written

    async def _after_successful_replay(
        self, conn: Any, entry: DeadLetterRecord, row: Any, result: ReplayResult, now: datetime
    ) -> None:
        outstanding = await conn.fetchval(sql.OUTSTANDING_LETTERS, entry.log_id)
        response, results = merged_replay(
            entry,
            decode_json_text(row["response"]),
            decode_json_text(row["results"]),
            result.response,
            list(result.results),
        )
        status = Status.DELIVERED if outstanding == 0 else Status.PARTIAL
        await conn.execute(
            sql.UPDATE_REPLAYED_SIGNAL,
            entry.log_id,
            row["created_at"],
            status.value,
            json_column(response),
            json_column(results),
            now,
        )

    async def reclaim_expired(self, owner: str, lease_s: float, limit: int) -> list[LogRecord]:
        """Take over signals whose owner died mid-flight (their lease expired)."""
        now = utcnow()
        until = now + timedelta(seconds=lease_s)
        floor = self._sweep_floor.lower()
        rows = await self._pool.run(
            "reclaim_expired",
            lambda conn: conn.fetch(
                sql.RECLAIM_EXPIRED, now, limit, owner, until, floor or WALK_FROM_BOTTOM
            ),
        )
        self._sweep_floor.swept(
            cutoff=now, lease_s=lease_s, picked=len(rows), limit=limit, full=floor is None
        )
        records = await off_loop(lambda: [log_record(r, decode_json_text) for r in rows])
        return [record for record in records if record.status is Status.IN_PROGRESS]

    async def release_leases(self, owner: str) -> int:
        """On shutdown: what this process leaves unfinished is reclaimable at once elsewhere."""
        status = await self._pool.run(
            "release_leases", lambda conn: conn.execute(sql.RELEASE_LEASES, owner, utcnow())
        )
        return int(status.split()[-1])

    async def prune(
        self, older_than: datetime, batch: int = 1000, after: PrunePosition | None = None
    ) -> Pruned:
        """``Store.prune``. A pruned signal's key goes with it: the deduplication window
        equals the retention period."""
        since = after or _PRUNE_START

        async def delete(conn: Any) -> Pruned:
            async with conn.transaction():
                picked = await conn.fetch(sql.PRUNE_PICK, as_utc(older_than), batch, *since)
                ids = [r["log_id"] for r in picked]
                if ids:
                    await conn.execute(sql.PRUNE_DEAD_LETTERS, ids)
                    await conn.execute(sql.PRUNE_SIGNALS, [r["created_at"] for r in picked], ids)
                    await conn.execute(sql.PRUNE_KEYS, ids)
            last = (picked[-1]["created_at"], ids[-1]) if len(ids) == batch else None
            return Pruned(len(ids), last)

        return await self._pool.run("prune", delete)

    async def dlq_backlog(self) -> int:
        count = await self._pool.run("dlq_backlog", lambda conn: conn.fetchval(sql.DLQ_BACKLOG))
        return int(count)


def unreclaimed_space(*, autovacuum: str, track_counts: str) -> list[str]:
    """The server settings under which nothing vacuums the router's tables by itself."""
    off = [
        name
        for name, value in (("autovacuum", autovacuum), ("track_counts", track_counts))
        if value != "on"
    ]
    if not off:
        return []
    return [
        f"{' and '.join(off)} off on this Postgres server: nothing vacuums signal_leases (a row "
        "inserted and deleted per signal) or the old row versions of signals, so both grow with "
        "every signal routed; turn autovacuum on or VACUUM them on a schedule"
    ]


def _outcome_params(row: OutcomeRow) -> tuple[Any, ...]:
    return (
        row.log_id,
        row.created_at,
        row.status,
        row.results,
        row.response,
        row.latency_ms,
        row.updated_at,
    )
