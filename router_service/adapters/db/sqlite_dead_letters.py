"""Dead letters on SQLite: list, claim for replay, settle a replay, count the backlog.

Part of ``SqliteStore`` (``sqlite.py``), which owns the connections and translates driver errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from router_service.adapters.db.page_size import rows_that_fit
from router_service.adapters.db.records import (
    dead_letter_record,
    encode_cursor,
    id_cursor_bound,
    merged_replay,
    records_off_loop,
    replayed_entry,
    text_column,
    utcnow,
)
from router_service.adapters.db.sqlite_replay_jobs import (
    DLQ_COLUMNS,
    DLQ_STORED_COLUMNS,
    SqliteReplayJobs,
)
from router_service.adapters.db.tables import (
    dead_letters,
    dead_letters_with_signals,
    signal_by_key,
    signals,
)
from router_service.domain.outcome import Status
from router_service.service.records import (
    SUPERSEDED,
    DeadLetterQuery,
    DeadLetterRecord,
    Page,
    ReplayResult,
)


class SqliteDeadLetters(SqliteReplayJobs):
    async def list_dead_letters(self, query: DeadLetterQuery) -> Page[DeadLetterRecord]:
        conditions = []
        if query.status is not None:
            conditions.append(dead_letters.c.status == query.status)
        if query.agent is not None:
            conditions.append(dead_letters.c.agent == query.agent)
        if query.kind is not None:
            conditions.append(dead_letters.c.kind == query.kind)
        if query.log_id is not None:
            conditions.append(dead_letters.c.log_id == query.log_id)
        if query.ids is not None:
            conditions.append(dead_letters.c.id.in_(list(query.ids)))
        if query.cursor is not None:
            conditions.append(dead_letters.c.id > id_cursor_bound(query.cursor))
        row_bytes = (
            func.length(signals.c.payload)
            + func.length(signals.c.metadata)
            + func.coalesce(func.length(dead_letters.c.error), 0)
        )
        sizes_of = (
            select(dead_letters.c.id, row_bytes.label("row_bytes"))
            .select_from(dead_letters_with_signals())
            .where(*conditions)
            .order_by(dead_letters.c.id)
            .limit(query.limit + 1)
        )
        async with self._connect("list_dead_letters") as conn:
            sizes = (await conn.execute(sizes_of)).all()
            taken, more = rows_that_fit([r.row_bytes for r in sizes], query.limit)
            if not taken:
                return Page([], None)
            conditions.append(dead_letters.c.id.between(sizes[0].id, sizes[taken - 1].id))
            columns = DLQ_STORED_COLUMNS if query.stored_json else DLQ_COLUMNS
            statement = (
                select(*columns)
                .select_from(dead_letters_with_signals())
                .where(*conditions)
                .order_by(dead_letters.c.id)
                .limit(taken)
            )
            found = await conn.execute(statement)
            items = await records_off_loop(found, dead_letter_record, query.stored_json)
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
        """Claim pending entries for one replayer; a claim expires if its replayer dies."""
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
            .where(dead_letters.c.id.in_(candidates.scalar_subquery()), claimable)
            .values(claimed_by=owner, claim_expires_at=now + timedelta(seconds=lease_s))
            .returning(dead_letters.c.id)
        )
        async with self._connect("claim_dead_letters", transaction=True) as conn:
            claimed = [r[0] for r in (await conn.execute(claim)).all()]
            if not claimed:
                return []
            found = await conn.execute(
                select(*DLQ_COLUMNS)
                .select_from(dead_letters_with_signals())
                .where(dead_letters.c.id.in_(claimed))
                .order_by(dead_letters.c.id)
            )
            return await records_off_loop(found, dead_letter_record)

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
        released = {"next_attempt_at": due, "claimed_by": None, "claim_expires_at": None}
        # As Postgres's ``FINISH_REPLAY``: pending, and the claim still the replayer's
        # (or a success, which the agent has whoever holds the claim now).
        still_theirs = and_(
            dead_letters.c.claimed_by.is_not_distinct_from(entry.claimed_by),
            dead_letters.c.claim_expires_at.is_not_distinct_from(entry.claim_expires_at),
        )
        this_entry = update(dead_letters).where(
            dead_letters.c.id == entry.id,
            dead_letters.c.status == "pending",
            *(() if result.ok else (still_theirs,)),
        )
        if not result.attempted:
            async with self._connect("finish_replay", transaction=True) as conn:
                done = (await conn.execute(this_entry.values(**released))).rowcount
            return "pending" if done == 1 else SUPERSEDED
        status, replay_count = replayed_entry(entry, result.ok, max_replays)
        async with self._connect("finish_replay", transaction=True) as conn:
            done = (
                await conn.execute(
                    this_entry.values(
                        status=status,
                        replay_count=replay_count,
                        error=text_column(result.error) if result.error else entry.error,
                        last_attempt_at=now,
                        **released,
                    )
                )
            ).rowcount
            if done != 1:
                return SUPERSEDED
            if result.ok:
                await self._after_successful_replay(conn, entry, result, now)
        return status

    async def _after_successful_replay(
        self, conn: AsyncConnection, entry: DeadLetterRecord, result: ReplayResult, now: datetime
    ) -> None:
        this_signal = signal_by_key(entry.log_id)
        row = (
            (await conn.execute(select(signals.c.response, signals.c.results).where(this_signal)))
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
        response, results = merged_replay(
            entry, row["response"], row["results"], result.response, list(result.results)
        )
        await conn.execute(
            update(signals)
            .where(this_signal)
            .values(
                status=(Status.DELIVERED if outstanding == 0 else Status.PARTIAL).value,
                response=response,
                results=results,
                updated_at=now,
            )
        )

    async def dlq_backlog(self) -> int:
        async with self._connect("dlq_backlog") as conn:
            count = await conn.execute(
                select(func.count())
                .select_from(dead_letters)
                .where(dead_letters.c.status == "pending")
            )
            return int(count.scalar_one())
