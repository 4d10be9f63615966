"""A lane keeps one connection of the pool for a writer that runs one statement at a time: the
same backend from one statement to the next, a fresh one after a killed backend, none kept
when the pool is too small to spare it, and every connection given back on close."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from router_service.adapters.db.pg_pool import PgPool, PoolSettings, asyncpg_dsn
from tests.support.db import scratch_database
from tests.support.fake_events import RecordingEvents

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn(tmp_path: Path) -> Iterator[str]:
    with scratch_database("postgres", tmp_path) as url:
        yield asyncpg_dsn(url)


def _pool(dsn: str, max_size: int, events: RecordingEvents) -> PgPool:
    settings = PoolSettings(
        dsn=dsn, max_size=max_size, connect_timeout_s=5, statement_timeout_ms=5000
    )
    return PgPool(settings, events)


async def _backend(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


def _in_use(events: RecordingEvents) -> int:
    return sum(args.get("in_use", 0) for args in events.named("db_pool"))


def test_a_lane_keeps_its_connection_and_gives_it_back_on_close(dsn: str) -> None:
    events = RecordingEvents()

    async def scenario() -> tuple[list[int], int, int, int]:
        pool = _pool(dsn, 10, events)
        lane = pool.lane("claim")
        backends = [(await lane.run_twice(_backend))[0] for _ in range(5)]
        held = _in_use(events)
        pooled = await pool.run("get", _backend)  # another caller gets another connection
        await pool.close()
        return backends, held, pooled, _in_use(events)

    backends, held, pooled, after_close = asyncio.run(scenario())
    assert len(set(backends)) == 1, backends
    assert held == 1  # kept between statements, and counted as in use
    assert pooled != backends[0]
    assert after_close == 0
    assert [args["operation"] for args in events.named("db_call")][:5] == ["claim"] * 5


def test_a_killed_backend_under_a_lane_is_replaced_and_the_statement_retried(dsn: str) -> None:
    events = RecordingEvents()

    async def scenario() -> tuple[int, int, bool, int]:
        pool = _pool(dsn, 10, events)
        lane = pool.lane("record")
        first, _ = await lane.run_twice(_backend)
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        calls = 0

        async def work(conn: Any) -> int:
            nonlocal calls
            calls += 1
            return await _backend(conn)

        second, retried = await lane.run_twice(work)
        await pool.close()
        return first, second, retried, calls

    first, second, retried, calls = asyncio.run(scenario())
    assert second != first
    # The dead connection may be noticed before the statement (closed) or by it (retried).
    assert (retried, calls) in {(True, 2), (False, 1)}
    assert _in_use(events) == 0


def test_a_pool_too_small_to_spare_connections_keeps_none(dsn: str) -> None:
    events = RecordingEvents()

    async def scenario() -> tuple[bool, bool, int, list[int]]:
        pool = _pool(dsn, 3, events)
        claims, outcomes = pool.lane("claim"), pool.lane("record")
        await claims.run_twice(_backend)
        await outcomes.run_twice(_backend)
        held = _in_use(events)
        # With one connection kept, the other two still serve two callers at once.
        together = await asyncio.gather(pool.run("a", _busy), pool.run("b", _busy))
        await pool.close()
        return claims.pinned, outcomes.pinned, held, together

    first_pinned, second_pinned, held, together = asyncio.run(scenario())
    assert (first_pinned, second_pinned) == (True, False)
    assert held == 1
    assert len(set(together)) == 2


async def _busy(conn: Any) -> int:
    await conn.execute("SELECT pg_sleep(0.05)")
    return await _backend(conn)


def test_a_lane_refuses_a_second_statement_while_one_runs(dsn: str) -> None:
    async def scenario() -> None:
        pool = _pool(dsn, 10, RecordingEvents())
        lane = pool.lane("claim")
        started = asyncio.Event()

        async def first(conn: Any) -> int:
            started.set()
            return await _busy(conn)

        try:
            running = asyncio.create_task(lane.run_twice(first))
            await started.wait()
            with pytest.raises(RuntimeError, match="one statement at a time"):
                await lane.run_twice(_backend)
            await running
        finally:
            await pool.close()

    asyncio.run(scenario())
