"""The migrated schema is partition-ready: ``signals`` becomes a table partitioned by
``created_at``, as docs/scaling.md tells an operator to do it, and the store works on it
unchanged (claims, duplicates, outcomes, dead letters, replays, prune).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from alembic import command

from router_service.adapters.db.migrate import alembic_config
from router_service.domain.outcome import Status
from router_service.service.records import Claim, DeadLetterQuery, LogQuery, ReplayResult
from tests.support.db import migrated_database, query, service_url
from tests.support.store import (
    DELIVERED,
    PARKED,
    PLAN,
    backdate,
    keys,
    open_store,
    record_outcome,
    signal,
)

pytestmark = pytest.mark.postgres

LEASE_S = 30.0
OLD = datetime(2001, 1, 1, tzinfo=UTC)


def primary_key(url: str, table: str) -> list[str]:
    rows = query(
        url,
        "SELECT a.attname FROM pg_index i "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.n",
        table,
    )
    return [r["attname"] for r in rows]


def partition_signals(url: str, cut: datetime) -> None:
    """docs/scaling.md's conversion: the old table becomes the partition of everything before
    ``cut`` (its CHECK constraint spares the scan, its indexes are adopted), and a new
    partition takes everything from ``cut`` on."""
    columns = ", ".join(primary_key(url, "signals"))
    query(
        url,
        "ALTER TABLE signals ADD CONSTRAINT signals_before_cut "
        f"CHECK (created_at < '{cut.isoformat()}') NOT VALID",
    )
    query(url, "ALTER TABLE signals VALIDATE CONSTRAINT signals_before_cut")
    renames = [
        f"ALTER INDEX {name} RENAME TO {name.replace('signals', 'signals_legacy', 1)}"
        for name in (
            "signals_pkey",
            "ix_signals_sender_created",
            "ix_signals_kind_created",
        )
    ]
    swap = [
        "LOCK TABLE signals IN ACCESS EXCLUSIVE MODE",
        "ALTER TABLE signals RENAME TO signals_legacy",
        *renames,
        "CREATE TABLE signals (LIKE signals_legacy INCLUDING DEFAULTS INCLUDING STORAGE) "
        "PARTITION BY RANGE (created_at)",
        f"ALTER TABLE signals ADD CONSTRAINT signals_pkey PRIMARY KEY ({columns})",
        "CREATE INDEX ix_signals_sender_created ON signals (sender_id, created_at, log_id)",
        "CREATE INDEX ix_signals_kind_created ON signals (kind, created_at)",
        "ALTER TABLE signals ATTACH PARTITION signals_legacy "
        f"FOR VALUES FROM (MINVALUE) TO ('{cut.isoformat()}')",
        "CREATE TABLE signals_next PARTITION OF signals "
        f"FOR VALUES FROM ('{cut.isoformat()}') TO (MAXVALUE) WITH (fillfactor = 40)",
        "ALTER TABLE signals_legacy DROP CONSTRAINT signals_before_cut",
    ]
    asyncio.run(_in_one_transaction(url, swap))


async def _in_one_transaction(url: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


def partition_of(url: str, log_id: str) -> str:
    [row] = query(
        url, "SELECT tableoid::regclass::text AS part FROM signals WHERE log_id = $1", log_id
    )
    return str(row["part"])


def partitioned(url: str) -> None:
    """On a migrated database: claim three signals (two of them old), then partition the log."""

    async def before() -> None:
        async with open_store(url) as store:
            for log_id in ("p-old-done", "p-old-parked", "p-recent"):
                assert (await store.claim(signal(log_id), PLAN, "a" * 32, "o", LEASE_S)).won
            await record_outcome(store, "p-old-done", PLAN, DELIVERED, 1.0)
            await record_outcome(store, "p-old-parked", PLAN, PARKED, 1.0)
            await record_outcome(store, "p-recent", PLAN, DELIVERED, 1.0)

    asyncio.run(before())
    backdate(url, "p-old-done", OLD)
    backdate(url, "p-old-parked", OLD)
    partition_signals(url, datetime.now(UTC) + timedelta(milliseconds=1))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with migrated_database("postgres") as fresh:
        partitioned(fresh)
        yield fresh


async def _claim(url: str, log_id: str, trace_id: str) -> Claim:
    async with open_store(url) as store:
        return await store.claim(signal(log_id), PLAN, trace_id, "owner", LEASE_S)


def test_the_log_primary_key_includes_the_partition_key(url: str) -> None:
    assert primary_key(url, "signals") == ["created_at", "log_id"]
    assert primary_key(url, "idempotency_keys") == ["log_id"]
    [table] = query(url, "SELECT relkind::text AS kind FROM pg_class WHERE relname = 'signals'")
    assert table["kind"] == "p"
    parts = query(
        url,
        "SELECT inhrelid::regclass::text AS part FROM pg_inherits "
        "WHERE inhparent = 'signals'::regclass ORDER BY 1",
    )
    assert [p["part"] for p in parts] == ["signals_legacy", "signals_next"]
    assert partition_of(url, "p-old-done") == "signals_legacy"
    # Attaching adopted the old table's three indexes instead of building a second set.
    indexes = query(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'signals_legacy'")
    assert len(indexes) == 3


def test_claims_on_the_partitioned_log_win_once_and_then_get_the_stored_record(
    url: str,
) -> None:
    assert asyncio.run(_claim(url, "p-new", "b" * 32)).won
    assert partition_of(url, "p-new") == "signals_next"
    again = asyncio.run(_claim(url, "p-new", "c" * 32))
    assert again.record is not None
    assert again.record.status is Status.IN_PROGRESS
    earlier = asyncio.run(_claim(url, "p-recent", "c" * 32))  # claimed before partitioning
    assert earlier.record is not None
    assert earlier.record.status is Status.DELIVERED
    assert earlier.record.response == {"ok": True}


def test_a_second_claim_with_the_same_trace_is_still_a_duplicate(url: str) -> None:
    """Only a claim re-sent after its connection died may take its own in-flight row for its
    first try; two requests that merely share a ``traceparent`` must not both dispatch."""
    assert asyncio.run(_claim(url, "p-retry", "d" * 32)).won
    assert not asyncio.run(_claim(url, "p-retry", "d" * 32)).won
    assert not asyncio.run(_claim(url, "p-retry", "e" * 32)).won


def test_outcomes_dead_letters_and_replays_work_on_the_partitioned_log(url: str) -> None:
    async def scenario() -> tuple[int, str]:
        async with open_store(url) as store:
            assert (await store.claim(signal("p-dl"), PLAN, "f" * 32, "o", LEASE_S)).won
            created = await record_outcome(store, "p-dl", PLAN, PARKED, 1.0)
            page = await store.list_dead_letters(DeadLetterQuery())
            assert {e.log_id for e in page.items} == {"p-dl", "p-old-parked"}
            [entry] = await store.claim_dead_letters(
                limit=None,
                ids=[e.id for e in page.items if e.log_id == "p-dl"],
                owner="r",
                lease_s=LEASE_S,
            )
            assert entry.payload == {"route": "one", "id": "p-dl"}
            ok = ReplayResult(ok=True, response={"again": True}, results=())
            status = await store.finish_replay(entry, ok, max_replays=3)
            logs = await store.list_logs(LogQuery(sender_id="store-test", limit=100))
            assert "p-dl" in {r.log_id for r in logs.items}
            return created, status

    assert asyncio.run(scenario()) == (1, "replayed")
    [row] = query(url, "SELECT status FROM signals WHERE log_id = $1", "p-dl")
    assert row["status"] == "delivered"


def test_expired_leases_are_taken_over_on_the_partitioned_log(url: str) -> None:
    async def scenario() -> list[str]:
        async with open_store(url) as store:
            lapsed = await store.claim(signal("p-lapsed"), PLAN, "j" * 32, "dead", -1.0)
            assert lapsed.won
            return [r.log_id for r in await store.reclaim_expired("alive", LEASE_S, 10)]

    assert asyncio.run(scenario()) == ["p-lapsed"]
    [row] = query(url, "SELECT owner FROM signal_leases WHERE log_id = $1", "p-lapsed")
    assert row["owner"] == "alive"


def test_prune_on_the_partitioned_log_takes_signals_and_keys(url: str) -> None:
    async def prune() -> int:
        async with open_store(url) as store:
            return (await store.prune(OLD + timedelta(days=1))).deleted

    assert asyncio.run(prune()) == 1  # p-old-parked keeps its pending dead letter
    assert "p-old-done" not in keys(url)
    assert not query(url, "SELECT 1 FROM signals WHERE log_id = 'p-old-done'")
    assert asyncio.run(_claim(url, "p-old-done", "g" * 32)).won
    assert partition_of(url, "p-old-done") == "signals_next"


def test_retention_drops_a_partition_with_the_keys_and_dead_letters_of_its_signals() -> None:
    with migrated_database("postgres") as url:
        partitioned(url)
        assert asyncio.run(_claim(url, "p-new", "h" * 32)).won
        # docs/scaling.md: one transaction; the DETACH's lock on the log is taken last.
        asyncio.run(
            _in_one_transaction(
                url,
                [
                    "DELETE FROM dead_letters WHERE log_id IN (SELECT log_id FROM signals_legacy)",
                    "DELETE FROM idempotency_keys "
                    "WHERE log_id IN (SELECT log_id FROM signals_legacy)",
                    "ALTER TABLE signals DETACH PARTITION signals_legacy",
                    "DROP TABLE signals_legacy",
                ],
            )
        )
        assert keys(url) == {"p-new"}
        assert not query(url, "SELECT 1 FROM dead_letters")
        assert asyncio.run(_claim(url, "p-new", "i" * 32)).record is not None
        assert asyncio.run(_claim(url, "p-recent", "i" * 32)).won  # past its retention


def fillfactors(url: str) -> dict[str, list[str] | None]:
    rows = query(
        url,
        "SELECT c.relname, c.reloptions FROM pg_class c "
        "WHERE c.relname IN ('signals', 'signals_legacy', 'signals_next') ORDER BY c.relname",
    )
    return {r["relname"]: r["reloptions"] for r in rows}


def test_migration_0007_gives_each_partition_of_the_log_room_for_the_outcome() -> None:
    """An operator who partitioned the log at 0006, as docs/scaling.md said then (new
    partitions at ``fillfactor = 70``): 0007 sets each partition, up and back down; the
    partitioned table itself holds no pages and takes no setting."""
    with migrated_database("postgres") as url:
        config = alembic_config(service_url(url))
        command.downgrade(config, "0006")
        partition_signals(url, datetime.now(UTC) + timedelta(days=1))
        query(url, "ALTER TABLE signals_next SET (fillfactor = 70)")
        at_70 = ["fillfactor=70"]
        before = {"signals": None, "signals_legacy": at_70, "signals_next": at_70}
        assert fillfactors(url) == before
        command.upgrade(config, "head")
        at_40 = ["fillfactor=40"]
        assert fillfactors(url) == {"signals": None, "signals_legacy": at_40, "signals_next": at_40}
        command.downgrade(config, "0006")
        assert fillfactors(url) == before
