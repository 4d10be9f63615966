"""The lease sweep on Postgres does not walk what the log deleted (``adapters/db/pg_sweep.py``):
after its first, full walk it reads the expiry index from a floor, and a full walk every
period still finds what expired below the floor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from router_service.adapters.db import pg_statements as sql
from router_service.adapters.db.pg_sweep import FULL_WALK_EVERY_S, WALK_FROM_BOTTOM, SweepFloor
from router_service.adapters.db.postgres import PgStore
from tests.support.db import migrated_database
from tests.support.fake_clock import FakeClock
from tests.support.store import PLAN, grow_log, open_store, signal

pytestmark = pytest.mark.postgres

LEASE_S = 30.0
DEAD = 50_000

# Leases taken and given back, as every outcome does: their index entries stay until a vacuum.
TAKE = """
INSERT INTO signal_leases (log_id, created_at, owner, expires_at)
SELECT 'dead-' || n, $1::timestamptz, 'gone', $1::timestamptz + n * interval '1 millisecond'
  FROM generate_series(1, $2) AS n
"""
GIVE_BACK = "DELETE FROM signal_leases WHERE owner = 'gone'"

# A grown log's signals, five of them left in flight by a dead owner.
GROWN = 100_000
EXPIRE_SOME = """
INSERT INTO signal_leases (log_id, created_at, owner, expires_at)
SELECT log_id, created_at, 'dead-owner', now() - interval '1 minute' FROM signals LIMIT 5
"""


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with migrated_database("postgres", tmp_path) as fresh:
        yield fresh


def test_a_lease_below_the_floor_waits_for_the_next_full_walk(url: str) -> None:
    clock = FakeClock()

    async def sweep(store: PgStore) -> list[str]:
        return sorted(r.log_id for r in await store.reclaim_expired("sweeper", LEASE_S, 10))

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with open_store(url) as store:
            assert isinstance(store, PgStore)
            store._sweep_floor = SweepFloor(clock=clock)
            first = await sweep(store)  # from the bottom: nothing yet
            for log_id, lease_s in (("expired-an-hour-ago", -3600.0), ("just-expired", -1.0)):
                claim = await store.claim(signal(log_id), PLAN, "t" * 32, "dead-owner", lease_s)
                assert claim.won
            floored = await sweep(store)
            clock.advance(FULL_WALK_EVERY_S)
            full = await sweep(store)
            return first, floored, full

    first, floored, full = asyncio.run(scenario())
    assert first == []
    assert floored == ["just-expired"]
    assert full == ["expired-an-hour-ago"]


async def _walked(conn: asyncpg.Connection, floor: datetime) -> int:
    """Blocks of the expiry index (with the heap pages they led to) that one sweep from
    ``floor`` read; there is nothing to take."""
    now = datetime.now(UTC)
    explained = await conn.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql.RECLAIM_EXPIRED,
        now, 10, "sweeper", now + timedelta(seconds=LEASE_S), floor,
    )  # fmt: skip
    nodes = [json.loads(explained)[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Index Name") == "ix_signal_leases_expires":
            return int(node["Shared Hit Blocks"]) + int(node["Shared Read Blocks"])
        nodes.extend(node.get("Plans", []))
    raise AssertionError(f"the sweep did not walk the expiry index: {explained}")


def test_a_sweep_from_the_floor_does_not_read_the_deleted_leases(url: str) -> None:
    async def scenario() -> tuple[int, int]:
        conn = await asyncpg.connect(url)
        try:
            taken_at = datetime.now(UTC) - timedelta(hours=1)
            await conn.execute(TAKE, taken_at, DEAD)
            await conn.execute(GIVE_BACK)
            await _walked(conn, WALK_FROM_BOTTOM)  # the first walk marks the entries dead
            full = await _walked(conn, WALK_FROM_BOTTOM)
            floor = SweepFloor()
            floor.swept(cutoff=datetime.now(UTC), lease_s=LEASE_S, picked=0, limit=10, full=True)
            lower = floor.lower()
            assert lower is not None
            return full, await _walked(conn, lower)
        finally:
            await conn.close()

    full, floored = asyncio.run(scenario())
    assert full > 100, full  # 50,000 dead entries: the whole index, every sweep
    assert floored <= 10, (full, floored)


def test_the_sweep_s_plan_made_on_an_empty_log_stays_index_lookups_as_it_grows(url: str) -> None:
    """The statement as a pool connection keeps it: prepared while the log is empty, its
    generic plan (forced here) reused after the log grew behind the statistics' back."""

    async def scenario() -> str:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(
                "PREPARE sweep(timestamptz, int, text, timestamptz, timestamptz) AS "
                + sql.RECLAIM_EXPIRED
            )
            await conn.execute("EXECUTE sweep(now(), 10, 's', now(), '-infinity')")
            await grow_log(url, GROWN)
            await conn.execute(EXPIRE_SOME)
            lines = await conn.fetch(
                "EXPLAIN EXECUTE sweep(now(), 10, 's', now() + interval '1 minute', "
                "now() - interval '1 hour')"
            )
            return "\n".join(line[0] for line in lines)
        finally:
            await conn.close()

    plan = asyncio.run(scenario())
    assert "Seq Scan" not in plan, plan
    assert "Index Scan using ix_signal_leases_expires" in plan, plan
    assert "Index Scan using signals_pkey" in plan, plan
