"""Replay jobs and replay attempts on Postgres (a part of ``PgStore``), statements in
``pg_statements.py``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from router_service.adapters.db import pg_statements as sql
from router_service.adapters.db.pg_pool import PgPool
from router_service.adapters.db.records import (
    as_utc,
    dead_letter_record,
    decode_json_text,
    filter_column,
    replay_attempt_record,
    replay_job_record,
    replay_jobs_cursor_bound,
    replay_jobs_page,
    text_column,
    utcnow,
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


def _filters(flt: DeadLetterFilter, after_id: int | None = None) -> tuple[str, list[Any]]:
    """The ``AND …`` clauses of ``flt`` with ``$1``… parameters."""
    values: dict[str, Any] = {
        "ids": list(flt.ids) if flt.ids is not None else None,
        "sender_id": flt.sender_id,
        "kind": flt.kind,
        "agent": flt.agent,
        "status": flt.status,
        "since": as_utc(flt.since) if flt.since else None,
        "until": as_utc(flt.until) if flt.until else None,
        "error_contains": flt.error_contains,
        "upto_id": flt.upto_id,
        "after_id": after_id,
    }
    where = sql.Filters()
    for name, value in values.items():
        if value is not None:
            where.add(sql.DEAD_LETTER_FILTERS[name], value)
    return where.text, where.params


class PgReplayJobs:
    _pool: PgPool

    async def survey_dead_letters(self, flt: DeadLetterFilter) -> DeadLetterSurvey:
        where, params = _filters(flt)
        reads_signals = any(getattr(flt, name) is not None for name in sql.SIGNAL_FILTERS)
        head = sql.SURVEY_HEAD if reads_signals else sql.SURVEY_HEAD_WITHOUT_SIGNALS

        async def read(conn: Any) -> DeadLetterSurvey:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                top = await conn.fetchval(sql.MAX_DEAD_LETTER_ID)
                rows = await conn.fetch(head + where + sql.SURVEY_TAIL, *params)
            groups = [(r["agent"], r["kind"], int(r["n"])) for r in rows]
            return DeadLetterSurvey(sum(g[2] for g in groups), int(top), groups)

        async with self._pool.scan():
            return await self._pool.run("survey_dead_letters", read)

    async def select_dead_letters(
        self, flt: DeadLetterFilter, *, after_id: int, limit: int
    ) -> list[DeadLetterRecord]:
        where, params = _filters(flt, after_id)
        statement = sql.SELECT_HEAD + where + sql.SELECT_TAIL.format(limit=int(limit))
        rows = await self._pool.run(
            "select_dead_letters", lambda conn: conn.fetch(statement, *params)
        )
        return [dead_letter_record(r, decode_json_text, stored=True) for r in rows]

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
        params = (
            created_by,
            now,
            filter_column(flt),
            flt.upto_id or 0,
            rate,
            max_entries,
            selected,
            owner,
            now + timedelta(seconds=lease_s),
        )
        row = await self._pool.run(
            "create_replay_job", lambda conn: conn.fetchrow(sql.INSERT_REPLAY_JOB, *params)
        )
        return replay_job_record(row)

    async def get_replay_job(self, job_id: int) -> ReplayJobRecord | None:
        row = await self._pool.run(
            "get_replay_job", lambda conn: conn.fetchrow(sql.GET_REPLAY_JOB, job_id)
        )
        return replay_job_record(row) if row is not None else None

    async def list_replay_jobs(
        self, limit: int, cursor: str | None = None
    ) -> Page[ReplayJobRecord]:
        below = replay_jobs_cursor_bound(cursor)
        rows = await self._pool.run(
            "list_replay_jobs", lambda conn: conn.fetch(sql.LIST_REPLAY_JOBS, limit + 1, below)
        )
        return replay_jobs_page([replay_job_record(r) for r in rows], limit)

    async def save_replay_job_progress(
        self, job_id: int, owner: str, progress: ReplayJobProgress, lease_s: float
    ) -> bool | None:
        now = utcnow()
        p = progress
        params = (
            job_id,
            owner,
            p.cursor_id,
            p.replayed,
            p.succeeded,
            p.failed,
            p.exhausted,
            p.deferred,
            now,
            now + timedelta(seconds=lease_s),
        )
        row = await self._pool.run(
            "save_replay_job_progress",
            lambda conn: conn.fetchrow(sql.SAVE_REPLAY_JOB_PROGRESS, *params),
        )
        return None if row is None else bool(row["cancel_requested"])

    async def finish_replay_job(
        self, job_id: int, owner: str, state: str, error: str | None = None
    ) -> None:
        params = (job_id, owner, state, error, utcnow())
        await self._pool.run(
            "finish_replay_job", lambda conn: conn.execute(sql.FINISH_REPLAY_JOB, *params)
        )

    async def cancel_replay_job(self, job_id: int) -> ReplayJobRecord | None:
        row = await self._pool.run(
            "cancel_replay_job",
            lambda conn: conn.fetchrow(sql.CANCEL_REPLAY_JOB, job_id, utcnow()),
        )
        return replay_job_record(row) if row is not None else None

    async def resume_replay_job(
        self, job_id: int, owner: str, lease_s: float
    ) -> ReplayJobRecord | None:
        now = utcnow()
        params = (job_id, owner, now + timedelta(seconds=lease_s), now)
        row = await self._pool.run(
            "resume_replay_job", lambda conn: conn.fetchrow(sql.RESUME_REPLAY_JOB, *params)
        )
        return replay_job_record(row) if row is not None else None

    async def take_over_replay_job(self, owner: str, lease_s: float) -> ReplayJobRecord | None:
        now = utcnow()
        params = (now, owner, now + timedelta(seconds=lease_s))
        row = await self._pool.run(
            "take_over_replay_job",
            lambda conn: conn.fetchrow(sql.TAKE_OVER_REPLAY_JOB, *params),
        )
        return replay_job_record(row) if row is not None else None

    async def release_replay_jobs(self, owner: str) -> int:
        status = await self._pool.run(
            "release_replay_jobs",
            lambda conn: conn.execute(sql.RELEASE_REPLAY_JOBS, owner, utcnow()),
        )
        return int(status.split()[-1])

    async def record_replay_attempt(self, attempt: ReplayAttemptRecord) -> None:
        a = attempt
        params = (
            a.log_id,
            a.dead_letter_id,
            a.job_id,
            a.agent or "",
            a.trace_id,
            a.outcome,
            None if a.error is None else text_column(a.error),
            a.created_at,
        )
        await self._pool.run(
            "record_replay_attempt", lambda conn: conn.execute(sql.INSERT_REPLAY_ATTEMPT, *params)
        )

    async def replay_history(self, log_id: str) -> list[ReplayAttemptRecord]:
        rows = await self._pool.run(
            "replay_history", lambda conn: conn.fetch(sql.REPLAY_HISTORY, log_id)
        )
        return [replay_attempt_record(r) for r in rows]
