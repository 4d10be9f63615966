"""Postgres: a page of the dead letters, and a replay job's batch, read their own entries, in id
order, and look up each one's signal; as a join, the planner estimated one row for it and
joined every pending entry, then sorted them for a page of 51 (1.2 s for ``GET /dlq`` with
234,000 pending, as long for every batch of a replay job)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from router_service.adapters.db import pg_statements as sql
from router_service.adapters.db.pg_replay_jobs import _filters
from router_service.service.records import DeadLetterFilter, DeadLetterQuery
from tests.support.db import migrated_database
from tests.support.store import grow_log, open_store

pytestmark = pytest.mark.postgres

PENDING = 20_000
PAGE = 50


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with migrated_database("postgres", tmp_path) as fresh:
        asyncio.run(_backlog(fresh))
        yield fresh


async def _backlog(url: str) -> None:
    await grow_log(url, PENDING)
    conn = await asyncpg.connect(url)
    try:
        # Signals of a month, as a log holds them (the planner's estimate of the join is wrong
        # only when the keys' times differ, as they do).
        await conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - random() * interval '30 days'"
        )
        await conn.execute(
            "UPDATE signals AS s SET created_at = k.created_at FROM idempotency_keys AS k"
            " WHERE k.log_id = s.log_id"
        )
        await conn.execute(
            "INSERT INTO dead_letters (log_id, agent, kind, mode, error, attempts, replay_count,"
            " status, created_at, last_attempt_at) SELECT log_id, 'alpha', kind, mode, 'HTTP 503',"
            " 1, 0, 'pending', created_at, created_at FROM signals"
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


async def _signal_rows_read(url: str, statement: str, params: list[Any]) -> int:
    """How many rows of ``signals`` the statement read (its plan, run)."""
    conn = await asyncpg.connect(url)
    try:
        text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *params)
    finally:
        await conn.close()
    plan = json.loads(text)[0]["Plan"]
    return sum(
        int(node["Actual Rows"]) * int(node["Actual Loops"])
        for node in _nodes(plan)
        if node.get("Relation Name") == "signals"
    )


def test_a_page_of_dead_letters_reads_only_its_own_signals(url: str) -> None:
    where = sql.Filters()
    where.add("d.status = {0}", "pending")
    tail = sql.LIST_DEAD_LETTERS_TAIL.format(limit=PAGE + 1)
    for head in (sql.LIST_DEAD_LETTERS_SIZES_HEAD, sql.LIST_DEAD_LETTERS_HEAD):
        read = asyncio.run(_signal_rows_read(url, head + where.text + tail, where.params))
        assert read <= PAGE + 1, head

    async def page() -> int:
        async with open_store(url) as store:
            got = await store.list_dead_letters(DeadLetterQuery(status="pending", limit=PAGE))
            return len(got.items)

    assert asyncio.run(page()) == PAGE


def test_a_replay_jobs_batch_reads_only_its_own_signals(url: str) -> None:
    flt = DeadLetterFilter(agent="alpha", upto_id=PENDING)
    where, params = _filters(flt, 1_000)
    statement = sql.SELECT_HEAD + where + sql.SELECT_TAIL.format(limit=PAGE)
    assert asyncio.run(_signal_rows_read(url, statement, params)) <= PAGE

    async def survey_and_batch() -> tuple[int, int]:
        async with open_store(url) as store:
            survey = await store.survey_dead_letters(DeadLetterFilter(kind="one"))
            batch = await store.select_dead_letters(flt, after_id=1_000, limit=PAGE)
            return survey.count, len(batch)

    assert asyncio.run(survey_and_batch()) == (PENDING, PAGE)
