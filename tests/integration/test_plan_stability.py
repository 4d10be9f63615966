"""The log must not slow the router down as it grows: on Postgres, the hot statements' cached
plans stay index lookups whatever the table held when they were prepared, and the outcome's
update is HOT (no new index entries)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from router_service.adapters.db import pg_statements as sql
from router_service.adapters.db.postgres import PgStore
from tests.support.db import migrated_database
from tests.support.store import DELIVERED, PLAN, grow_log, open_store, signal

pytestmark = pytest.mark.postgres

LEASE_S = 30.0
WARM_UP = 12  # Postgres switches a prepared statement to its generic plan after five runs
GROWN = 50_000


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with migrated_database("postgres", tmp_path) as fresh:
        yield fresh


async def _claim_and_record(store: Any, log_id: str) -> None:
    claim = await store.claim(signal(log_id), PLAN, "p" * 32, "me", LEASE_S)
    assert claim.won
    await store.record(log_id, claim.claimed_at, PLAN, DELIVERED, 1.0)


async def _hot_updates(url: str) -> tuple[int, int]:
    """``signals``' updates and HOT updates so far (the store's connections are closed, so
    their statistics are flushed)."""
    conn = await asyncpg.connect(url, server_settings={"stats_fetch_consistency": "none"})
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")  # this backend's own
        await conn.execute("SELECT 1")
        row = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'signals'"
        )
        return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])
    finally:
        await conn.close()


async def _cached_plans(store: PgStore) -> dict[str, str]:
    """The plan each prepared statement would run now, on the connection that ran it: the
    outcome's on the connection its group commit keeps (``pg_lane.py``), the read's on the
    pool's."""
    plans: dict[str, str] = {}
    await store._outcome_lane.run_twice(lambda conn: _explain(conn, plans))
    async with store._pool.connection("explain") as conn:
        await _explain(conn, plans)
    return plans


async def _explain(conn: Any, plans: dict[str, str]) -> None:
    arguments = {
        sql.RECORD: "('x', now(), 'delivered', '[]', 'null', 1.0, now())",
        sql.GET: "('x')",
    }
    prepared = await conn.fetch("SELECT name, statement FROM pg_prepared_statements")
    for row in prepared:
        for statement, args in arguments.items():
            if row["statement"].strip() == statement.strip():
                lines = await conn.fetch(f"EXPLAIN EXECUTE {row['name']}{args}")
                plans[statement] = "\n".join(line[0] for line in lines)


def test_outcome_plans_made_on_an_empty_log_stay_index_lookups_as_it_grows(url: str) -> None:
    async def scenario() -> dict[str, str]:
        async with open_store(url) as store:
            assert isinstance(store, PgStore)
            for n in range(WARM_UP):  # one at a time: one connection runs them all
                await _claim_and_record(store, f"warm-{n}")
                assert await store.get(f"warm-{n}") is not None
            await grow_log(url, GROWN)
            await _claim_and_record(store, "after-growth")
            return await _cached_plans(store)

    plans = asyncio.run(scenario())
    assert set(plans) == {sql.RECORD, sql.GET}, "the statements were not prepared"
    for statement, plan in plans.items():
        assert "Seq Scan" not in plan, f"{statement}\n{plan}"
    assert "Index Scan using signals_pkey" in plans[sql.RECORD], plans[sql.RECORD]
    assert "Index Scan using signal_leases_pkey" in plans[sql.RECORD], plans[sql.RECORD]


def test_the_outcome_update_is_hot(url: str) -> None:
    """Each outcome commits on its own, as in service; the old row versions it leaves are pruned
    from the page on the next visit, so the page keeps room for the next in-place update."""
    ids = [f"hot-{n}" for n in range(200)]

    async def scenario() -> tuple[int, int]:
        async with open_store(url) as store:
            for log_id in ids:
                claim = await store.claim(signal(log_id), PLAN, "h" * 32, "me", LEASE_S)
                assert claim.claimed_at is not None
                await store.record(log_id, claim.claimed_at, PLAN, DELIVERED, 1.0)
        return await _hot_updates(url)

    updated, hot = asyncio.run(scenario())
    assert updated == len(ids)
    assert hot >= 0.9 * updated, (updated, hot)


def test_the_outcome_update_is_hot_when_no_old_row_version_can_be_pruned(url: str) -> None:
    """Under steady load some transaction always still sees the rows' old versions, so a page
    cannot count on pruning to make room: it must hold every row's new version beside the old
    one. A snapshot taken before the claims stays open until every outcome is written, and the
    payloads are the size of the load generator's mix on average (about 450 bytes). With
    ``fillfactor = 70`` (migration 0004) 36 outcomes of 80 were HOT."""
    ids = [f"full-{n}" for n in range(80)]
    words = "words " * 75

    async def scenario() -> tuple[int, int]:
        holder = await asyncpg.connect(url)
        try:
            await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await holder.fetchval("SELECT count(*) FROM signals")  # the snapshot, kept
            async with open_store(url) as store:
                claims = [
                    await store.claim(signal(log_id, text=words), PLAN, "s" * 32, "me", LEASE_S)
                    for log_id in ids
                ]
                for log_id, claim in zip(ids, claims, strict=True):
                    assert claim.claimed_at is not None
                    await store.record(log_id, claim.claimed_at, PLAN, DELIVERED, 1.0)
            await holder.execute("ROLLBACK")
        finally:
            await holder.close()
        return await _hot_updates(url)

    updated, hot = asyncio.run(scenario())
    assert updated == len(ids)
    assert hot == updated, (updated, hot)
