"""The SQLite store's writes (``adapters/db/sqlite_writer.py``) on a real SQLite file: one at a
time in the process, concurrent signals' claims and outcomes in shared transactions, the claim
not flushed on its own, a refused row failing alone, a caller that stops waiting."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError

from router_service.adapters.db.engine import sqlite_engine, sqlite_writer_engine
from router_service.adapters.db.sqlite import SqliteStore
from router_service.adapters.db.sqlite_writer import SqliteWriter
from router_service.config.settings import Settings
from router_service.domain.errors import Overloaded, StorageUnavailable
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.runtime.services import build_store
from tests.support.db import migrated_database, query, service_url
from tests.support.store import DELIVERED, PLAN, signal


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with migrated_database("sqlite", tmp_path) as fresh:
        yield fresh


def commits(engine: Engine) -> list[int]:
    """One entry per transaction the engine commits."""
    seen: list[int] = []
    event.listen(engine, "commit", lambda _conn: seen.append(1))
    return seen


@asynccontextmanager
async def store_without_busy_handler(
    url: str, metrics: Metrics | None = None
) -> AsyncIterator[tuple[SqliteStore, list[int]]]:
    """The store as ``open_store`` builds it, but SQLite's busy handler off on every connection:
    two of our transactions that met inside SQLite would fail at once ("database is locked")."""
    engine = sqlite_engine(
        service_url(url), pool_size=10, max_overflow=10, timeout_s=5, busy_timeout_ms=0
    )
    writer_engine = sqlite_writer_engine(service_url(url), busy_timeout_ms=0)
    seen = commits(writer_engine)
    writer = SqliteWriter(writer_engine, wait_s=10)
    store = SqliteStore(engine, writer, Telemetry(metrics or Metrics()), 10)
    try:
        yield store, seen
    finally:
        await store.close()


def test_concurrent_signals_never_meet_inside_sqlite_and_share_commits(url: str) -> None:
    """64 signals claimed and finished at once, with the sweeper's and shutdown's transactions
    among them: none waits in SQLite's busy handler (here: none fails), and the hot path's
    writes went in fewer transactions than signals."""

    async def one(store: SqliteStore, n: int) -> None:
        claim = await store.claim(signal(f"sig-{n:03d}"), PLAN, "c" * 32, "owner-a", 30)
        assert claim.won
        assert claim.claimed_at is not None
        await store.record(f"sig-{n:03d}", claim.claimed_at, PLAN, DELIVERED, 1.0)

    async def scenario() -> int:
        async with store_without_busy_handler(url) as (store, seen):
            others = [store.reclaim_expired("owner-b", 30, 10), store.release_leases("none")]
            await asyncio.gather(*(one(store, n) for n in range(64)), *others)
            return len(seen)

    transactions = asyncio.run(scenario())
    assert 2 <= transactions < 64  # 128 writes (64 claims, 64 outcomes) in shared commits
    [row] = query(url, "SELECT count(*) AS n FROM signals WHERE status = 'delivered'")
    assert row["n"] == 64
    [leases] = query(url, "SELECT count(*) AS n FROM signal_leases")
    assert leases["n"] == 0


def synchronous_setting(conn: Connection) -> int:
    return int(conn.execute(text("PRAGMA synchronous")).scalar_one())


def test_a_claim_commits_unflushed_and_a_batch_with_an_outcome_is_flushed(url: str) -> None:
    """``durable=False`` commits with ``synchronous=NORMAL`` (1); a durable transaction, and a
    batch holding one, with ``FULL`` (2). Of writers that arrive together, the first goes alone
    and the rest as one batch (``group_commit.py``)."""

    async def scenario() -> list[Any]:
        writer = SqliteWriter(sqlite_writer_engine(service_url(url), busy_timeout_ms=0), 10)
        try:
            alone = [
                await writer.run(synchronous_setting, durable=False),
                await writer.run(synchronous_setting),
                await writer.run(synchronous_setting, durable=False),
            ]
            async with writer.turn():
                together = [
                    asyncio.ensure_future(writer.run(synchronous_setting, durable=d))
                    for d in (False, False, True, False)
                ]
                await asyncio.sleep(0)  # one turn of the loop: each waits behind this turn
            return [*alone, *(await asyncio.gather(*together))]
        finally:
            await writer.close()

    assert asyncio.run(scenario()) == [1, 2, 1, 1, 2, 2, 2]


def test_a_row_that_sqlite_refuses_fails_alone_and_its_batch_commits(url: str) -> None:
    def key(log_id: str) -> Callable[[Connection], int]:
        statement = text("INSERT INTO idempotency_keys (log_id, created_at) VALUES (:id, '2026')")
        return lambda conn: conn.execute(statement, {"id": log_id}).rowcount

    async def scenario() -> list[Any]:
        writer = SqliteWriter(sqlite_writer_engine(service_url(url), busy_timeout_ms=0), 10)
        try:
            async with writer.turn():
                batch = [
                    asyncio.ensure_future(writer.run(key(log_id)))
                    for log_id in ("k-1", "k-2", "k-1", "k-3")  # the second k-1 is refused
                ]
                await asyncio.sleep(0)  # one turn of the loop: each waits behind this turn
            return await asyncio.gather(*batch, return_exceptions=True)
        finally:
            await writer.close()

    first, second, refused, third = asyncio.run(scenario())
    assert (first, second, third) == (1, 1, 1)
    assert isinstance(refused, IntegrityError)
    rows = query(url, "SELECT log_id FROM idempotency_keys ORDER BY log_id")
    assert [r["log_id"] for r in rows] == ["k-1", "k-2", "k-3"]


def test_a_writer_that_cannot_get_its_turn_in_time_is_refused_as_overloaded(url: str) -> None:
    async def scenario() -> None:
        writer = SqliteWriter(sqlite_writer_engine(service_url(url), busy_timeout_ms=0), 0.05)
        try:
            async with writer.turn():
                with pytest.raises(Overloaded):
                    await writer.run(synchronous_setting)
        finally:
            await writer.close()

    asyncio.run(scenario())


def test_a_transaction_whose_caller_stops_waiting_commits_before_the_next_turn(url: str) -> None:
    """The caller is cancelled while its transaction is on the thread: the transaction still
    commits, and the next turn (here another connection's) begins only after it."""
    release = threading.Event()

    def slow_key(conn: Connection) -> None:
        conn.execute(text("INSERT INTO idempotency_keys VALUES ('abandoned', '2026')"))
        release.wait(10)

    async def next_turn(writer: SqliteWriter) -> int:
        async with writer.turn():
            [row] = query(url, "SELECT count(*) AS n FROM idempotency_keys")
            return int(row["n"])

    async def scenario() -> int:
        writer = SqliteWriter(sqlite_writer_engine(service_url(url), busy_timeout_ms=0), 10)
        try:
            caller = asyncio.ensure_future(writer.run(slow_key))
            await asyncio.sleep(0)  # one turn of the loop: the transaction is on the thread
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            after = asyncio.ensure_future(next_turn(writer))
            await asyncio.sleep(0)  # it waits for the turn (it would count 0 if it had it)
            release.set()
            return await after
        finally:
            await writer.close()

    assert asyncio.run(scenario()) == 1


def test_a_lock_held_by_another_process_is_unavailable_and_the_writer_recovers(url: str) -> None:
    """Another process (a second worker, a command) holds SQLite's write lock past the busy
    timeout: the claim fails as ``StorageUnavailable`` (503) and keeps nothing; once the lock
    is gone the same signal is claimed, and the turn and the group commit were left free."""
    holder = sqlite3.connect(str(make_url(url).database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def scenario() -> bool:
        settings = Settings(_env_file=None, database_url=url, db_statement_timeout_ms=100)  # type: ignore[call-arg]
        store = build_store(settings, Telemetry(Metrics()))
        try:
            with pytest.raises(StorageUnavailable):
                await store.claim(signal("locked-out"), PLAN, "c" * 32, "owner-a", 30)
            holder.execute("ROLLBACK")
            claim = await store.claim(signal("locked-out"), PLAN, "c" * 32, "owner-a", 30)
            return claim.won
        finally:
            await store.close()

    try:
        assert asyncio.run(scenario())
    finally:
        holder.close()
    [row] = query(url, "SELECT count(*) AS n FROM signals WHERE log_id = 'locked-out'")
    assert row["n"] == 1


def test_writes_waiting_for_their_turn_are_not_counted_as_pool_connections(url: str) -> None:
    """``db_pool_connections_in_use`` counts connections checked out of the pool: 16 claims
    queued for the writer's one connection hold none of them."""
    metrics = Metrics()

    def in_use() -> float | None:
        return metrics.registry.get_sample_value("db_pool_connections_in_use")

    async def scenario() -> tuple[float | None, float | None]:
        async with store_without_busy_handler(url, metrics) as (store, _seen):
            async with store._writer.turn():
                claims = [
                    asyncio.ensure_future(
                        store.claim(signal(f"queued-{n}"), PLAN, "c" * 32, "owner-a", 30)
                    )
                    for n in range(16)
                ]
                await asyncio.sleep(0)  # one turn of the loop: each waits behind this turn
                queued = in_use()
            await asyncio.gather(*claims)
            return queued, in_use()

    assert asyncio.run(scenario()) == (0.0, 0.0)
