"""Replay jobs and replay attempts on SQLite (a part of ``SqliteStore``)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from router_service.adapters.db.records import (
    as_utc,
    dead_letter_record,
    filter_column,
    records_off_loop,
    replay_attempt_record,
    replay_job_record,
    replay_jobs_cursor_bound,
    replay_jobs_page,
    text_column,
    utcnow,
)
from router_service.adapters.db.tables import (
    dead_letters,
    dead_letters_with_signals,
    replay_attempts,
    replay_jobs,
    signals,
)
from router_service.service.records import (
    DeadLetterFilter,
    DeadLetterRecord,
    DeadLetterSurvey,
    Page,
    ReplayAttemptRecord,
    ReplayJobProgress,
    ReplayJobRecord,
)

# A dead letter with what its signal needs to be sent again (both SQLite modules select it).
DLQ_COLUMNS = (
    *dead_letters.c,
    signals.c.payload,
    signals.c.sender_id,
    signals.c.metadata,
    signals.c.signal_ts,
    signals.c.trace_id,
)
STORED_JSON = frozenset({"metadata", "results", "response"})  # the payload is text already


def as_stored(columns: Iterable[Any]) -> list[Any]:
    """``columns`` with the JSON ones selected as their text, for ``stored_json`` reads:
    SQLAlchemy's JSON type would parse them."""
    return [type_coerce(c, Text).label(c.name) if c.name in STORED_JSON else c for c in columns]


DLQ_STORED_COLUMNS = as_stored(DLQ_COLUMNS)


def _routed_to(agent: str) -> ColumnElement[bool]:
    each = func.json_each(signals.c.routed_agents).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value == agent))


def _conditions(flt: DeadLetterFilter, after_id: int | None = None) -> list[ColumnElement[bool]]:
    d = dead_letters.c
    found: list[ColumnElement[bool]] = [d.status == "pending"]
    if flt.ids is not None:
        found.append(d.id.in_(list(flt.ids)))
    if flt.sender_id is not None:
        found.append(signals.c.sender_id == flt.sender_id)
    if flt.kind is not None:
        found.append(d.kind == flt.kind)
    if flt.agent is not None:
        found.append(or_(d.agent == flt.agent, and_(d.agent == "", _routed_to(flt.agent))))
    if flt.status is not None:
        found.append(signals.c.status == flt.status)
    if flt.since is not None:
        found.append(d.created_at >= as_utc(flt.since))
    if flt.until is not None:
        found.append(d.created_at < as_utc(flt.until))
    if flt.error_contains is not None:
        found.append(func.instr(func.lower(d.error), flt.error_contains.lower()) > 0)
    if flt.upto_id is not None:
        found.append(d.id <= flt.upto_id)
    if after_id is not None:
        found.append(d.id > after_id)
    return found


class SqliteReplayJobs:
    def _connect(
        self, operation: str, *, transaction: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError  # SqliteStore's: a pooled connection, errors translated

    async def survey_dead_letters(self, flt: DeadLetterFilter) -> DeadLetterSurvey:
        counted = (
            select(dead_letters.c.agent, dead_letters.c.kind, func.count())
            .select_from(dead_letters_with_signals())
            .where(*_conditions(flt))
            .group_by(dead_letters.c.agent, dead_letters.c.kind)
            .order_by(dead_letters.c.agent, dead_letters.c.kind)
        )
        async with self._connect("survey_dead_letters", transaction=True) as conn:
            top = (
                await conn.execute(select(func.coalesce(func.max(dead_letters.c.id), 0)))
            ).scalar_one()
            rows = (await conn.execute(counted)).all()
        groups = [(agent or None, kind, int(n)) for agent, kind, n in rows]
        return DeadLetterSurvey(sum(g[2] for g in groups), int(top), groups)

    async def select_dead_letters(
        self, flt: DeadLetterFilter, *, after_id: int, limit: int
    ) -> list[DeadLetterRecord]:
        statement = (
            select(*DLQ_STORED_COLUMNS)
            .select_from(dead_letters_with_signals())
            .where(*_conditions(flt, after_id))
            .order_by(dead_letters.c.id)
            .limit(limit)
        )
        async with self._connect("select_dead_letters") as conn:
            found = await conn.execute(statement)
            return await records_off_loop(found, dead_letter_record, stored=True)

    async def create_replay_job(
        self,
        *,
        created_by: str,
        flt: DeadLetterFilter,
        rate: float | None,
        max_entries: int | None,
        selected: int,
        owner: str,
        lease_s: float,
    ) -> ReplayJobRecord:
        now = utcnow()
        values = {
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "state": "running",
            "filter": filter_column(flt),
            "snapshot_id": flt.upto_id or 0,
            "rate": rate,
            "max_entries": max_entries,
            "selected": selected,
            "cursor_id": 0,
            "cancel_requested": False,
            "lease_owner": owner,
            "lease_expires_at": now + timedelta(seconds=lease_s),
            **dict.fromkeys(("replayed", "succeeded", "failed", "exhausted", "deferred"), 0),
        }
        async with self._connect("create_replay_job", transaction=True) as conn:
            row = (
                (
                    await conn.execute(
                        replay_jobs.insert().values(**values).returning(*replay_jobs.c)
                    )
                )
                .mappings()
                .one()
            )
        return replay_job_record(row)

    async def get_replay_job(self, job_id: int) -> ReplayJobRecord | None:
        async with self._connect("get_replay_job") as conn:
            row = (
                (await conn.execute(select(replay_jobs).where(replay_jobs.c.id == job_id)))
                .mappings()
                .first()
            )
        return replay_job_record(row) if row is not None else None

    async def list_replay_jobs(
        self, limit: int, cursor: str | None = None
    ) -> Page[ReplayJobRecord]:
        below = replay_jobs.c.id < replay_jobs_cursor_bound(cursor)
        statement = select(replay_jobs).where(below).order_by(replay_jobs.c.id.desc())
        async with self._connect("list_replay_jobs") as conn:
            rows = (await conn.execute(statement.limit(limit + 1))).mappings().all()
        return replay_jobs_page([replay_job_record(r) for r in rows], limit)

    async def _update_job(
        self, operation: str, where: list[ColumnElement[bool]], values: dict[str, Any]
    ) -> ReplayJobRecord | None:
        statement = update(replay_jobs).where(*where).values(**values).returning(*replay_jobs.c)
        async with self._connect(operation, transaction=True) as conn:
            row = (await conn.execute(statement)).mappings().first()
        return replay_job_record(row) if row is not None else None

    async def save_replay_job_progress(
        self, job_id: int, owner: str, progress: ReplayJobProgress, lease_s: float
    ) -> bool | None:
        now = utcnow()
        job = await self._update_job(
            "save_replay_job_progress",
            [
                replay_jobs.c.id == job_id,
                replay_jobs.c.lease_owner == owner,
                replay_jobs.c.state == "running",
            ],
            {
                "cursor_id": progress.cursor_id,
                "replayed": progress.replayed,
                "succeeded": progress.succeeded,
                "failed": progress.failed,
                "exhausted": progress.exhausted,
                "deferred": progress.deferred,
                "updated_at": now,
                "lease_expires_at": now + timedelta(seconds=lease_s),
            },
        )
        return None if job is None else job.cancel_requested

    async def finish_replay_job(
        self, job_id: int, owner: str, state: str, error: str | None = None
    ) -> None:
        now = utcnow()
        await self._update_job(
            "finish_replay_job",
            [
                replay_jobs.c.id == job_id,
                replay_jobs.c.lease_owner == owner,
                replay_jobs.c.state == "running",
            ],
            {
                "state": state,
                "error": error,
                "finished_at": now,
                "updated_at": now,
                "lease_owner": None,
                "lease_expires_at": None,
            },
        )

    async def cancel_replay_job(self, job_id: int) -> ReplayJobRecord | None:
        now = utcnow()
        j = replay_jobs.c
        running = j.state == "running"
        unheld = and_(running, or_(j.lease_expires_at.is_(None), j.lease_expires_at < now))
        return await self._update_job(
            "cancel_replay_job",
            [j.id == job_id],
            {
                "cancel_requested": running,
                "updated_at": now,
                "state": case((unheld, "cancelled"), else_=j.state),
                "finished_at": case((unheld, now), else_=j.finished_at),
            },
        )

    async def resume_replay_job(
        self, job_id: int, owner: str, lease_s: float
    ) -> ReplayJobRecord | None:
        now = utcnow()
        return await self._update_job(
            "resume_replay_job",
            [replay_jobs.c.id == job_id, replay_jobs.c.state.in_(("cancelled", "failed"))],
            {
                "state": "running",
                "cancel_requested": False,
                "finished_at": None,
                "error": None,
                "lease_owner": owner,
                "lease_expires_at": now + timedelta(seconds=lease_s),
                "updated_at": now,
            },
        )

    async def take_over_replay_job(self, owner: str, lease_s: float) -> ReplayJobRecord | None:
        now = utcnow()
        j = replay_jobs.c
        orphaned = and_(
            j.state == "running", or_(j.lease_expires_at.is_(None), j.lease_expires_at < now)
        )
        oldest = select(j.id).where(orphaned).order_by(j.id).limit(1).scalar_subquery()
        # One writer at a time on SQLite: the condition is re-checked by the UPDATE itself.
        return await self._update_job(
            "take_over_replay_job",
            [j.id == oldest, orphaned, true()],
            {
                "lease_owner": owner,
                "lease_expires_at": now + timedelta(seconds=lease_s),
                "updated_at": now,
            },
        )

    async def release_replay_jobs(self, owner: str) -> int:
        statement = (
            update(replay_jobs)
            .where(replay_jobs.c.lease_owner == owner, replay_jobs.c.state == "running")
            .values(lease_expires_at=utcnow())
        )
        async with self._connect("release_replay_jobs", transaction=True) as conn:
            return int((await conn.execute(statement)).rowcount)

    async def record_replay_attempt(self, attempt: ReplayAttemptRecord) -> None:
        a = attempt
        statement = replay_attempts.insert().values(
            log_id=a.log_id,
            dead_letter_id=a.dead_letter_id,
            job_id=a.job_id,
            agent=a.agent or "",
            trace_id=a.trace_id,
            outcome=a.outcome,
            error=None if a.error is None else text_column(a.error),
            created_at=a.created_at,
        )
        async with self._connect("record_replay_attempt", transaction=True) as conn:
            await conn.execute(statement)

    async def replay_history(self, log_id: str) -> list[ReplayAttemptRecord]:
        statement = (
            select(replay_attempts)
            .where(replay_attempts.c.log_id == log_id)
            .order_by(replay_attempts.c.id)
        )
        async with self._connect("replay_history") as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [replay_attempt_record(r) for r in rows]
