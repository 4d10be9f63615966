"""The migrations on a database with data, on both backends: up from 0002, and back down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from router_service.adapters.db.migrate import alembic_config, head_revision
from router_service.adapters.db.revision import SCHEMA_HEAD
from router_service.adapters.db.tables import dead_letters, signals
from router_service.domain.errors import SchemaOutOfDate
from router_service.domain.outcome import Status
from router_service.runtime.startup import wait_for_schema
from router_service.service.records import DeadLetterQuery
from tests.support.db import query, scratch_database, service_url
from tests.support.store import PLAN, keys, open_engine, open_store, signal

CREATED = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database at 0002 holding a delivered signal and a dead-lettered one."""
    with scratch_database(backend, tmp_path) as fresh:
        upgrade_to(fresh, "0002")
        asyncio.run(_fill_at_0002(fresh))
        yield fresh


def upgrade_to(url: str, revision: str) -> None:
    command.upgrade(alembic_config(service_url(url)), revision)


def downgrade_to(url: str, revision: str) -> None:
    command.downgrade(alembic_config(service_url(url)), revision)


async def _revision(url: str) -> str | None:
    async with open_store(url) as store:
        return await store.schema_revision()


def _row(log_id: str, status: str) -> dict[str, Any]:
    return {
        "log_id": log_id,
        "sender_id": "store-test",
        "payload_hash": signal(log_id).payload_hash,
        "payload": signal(log_id).payload_json,
        "metadata": {},
        "signal_ts": CREATED,
        "trace_id": "a" * 32,
        "kind": "one",
        "rule": "route-one",
        "mode": "first_success",
        "routed_agents": ["alpha"],
        "status": status,
        "response": {"ok": True} if status == "delivered" else None,
        "created_at": CREATED,
        "updated_at": CREATED,
    }


async def _fill_at_0002(url: str) -> None:
    async with open_engine(url) as engine, engine.begin() as conn:
        await conn.execute(
            signals.insert(), [_row("m-done", "delivered"), _row("m-parked", "dead_lettered")]
        )
        await conn.execute(
            dead_letters.insert().values(
                log_id="m-parked",
                agent="",
                kind="one",
                mode="first_success",
                error="alpha: HTTP 400",
                attempts=1,
                replay_count=0,
                status="pending",
                created_at=CREATED,
            )
        )


def _schema(url: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        inspector = inspect(conn)
        [reference] = inspector.get_foreign_keys("dead_letters")
        return {
            "tables": sorted(inspector.get_table_names()),
            "signals_pk": inspector.get_pk_constraint("signals")["constrained_columns"],
            "dead_letters_refer_to": (reference["referred_table"], reference["referred_columns"]),
        }

    async def run() -> dict[str, Any]:
        async with open_engine(url) as engine, engine.connect() as conn:
            return await conn.run_sync(read)

    return asyncio.run(run())


def test_a_router_refuses_to_start_on_a_database_still_at_0002(url: str) -> None:
    async def check() -> None:
        async with open_store(url) as store:
            await wait_for_schema(store, 0)

    with pytest.raises(
        SchemaOutOfDate, match=f"at revision 0002 but this router needs {SCHEMA_HEAD}"
    ):
        asyncio.run(check())


def test_upgrade_from_0002_backfills_the_keys_and_still_refuses_duplicates(url: str) -> None:
    upgrade_to(url, "head")
    assert asyncio.run(_revision(url)) == SCHEMA_HEAD
    assert _schema(url) == {
        "tables": [
            "alembic_version",
            "dead_letters",
            "idempotency_keys",
            "replay_attempts",
            "replay_jobs",
            "signal_leases",
            "signals",
        ],
        "signals_pk": ["created_at", "log_id"],
        "dead_letters_refer_to": ("idempotency_keys", ["log_id"]),
    }
    backfilled = query(url, "SELECT log_id, created_at FROM idempotency_keys ORDER BY log_id")
    from_log = query(url, "SELECT log_id, created_at FROM signals ORDER BY log_id")
    assert backfilled == from_log
    assert keys(url) == {"m-done", "m-parked"}

    async def claims() -> tuple[Any, Any, bool]:
        async with open_store(url) as store:
            done = await store.claim(signal("m-done"), PLAN, "b" * 32, "o", 30)
            parked = await store.claim(signal("m-parked"), PLAN, "b" * 32, "o", 30)
            new = await store.claim(signal("m-new"), PLAN, "b" * 32, "o", 30)
            return done.record, parked.record, new.won

    done, parked, new_won = asyncio.run(claims())
    assert done is not None
    assert done.status is Status.DELIVERED
    assert done.response == {"ok": True}
    assert parked is not None
    assert parked.status is Status.DEAD_LETTERED
    assert new_won
    letters = query(url, "SELECT log_id, status FROM dead_letters")
    assert letters == [{"log_id": "m-parked", "status": "pending"}]


def test_downgrade_to_0002_restores_the_log_key_and_keeps_every_row(url: str) -> None:
    upgrade_to(url, "head")

    async def claim_new() -> bool:
        async with open_store(url) as store:
            return (await store.claim(signal("m-new"), PLAN, "b" * 32, "o", 30)).won

    assert asyncio.run(claim_new())
    downgrade_to(url, "0002")
    assert asyncio.run(_revision(url)) == "0002"
    assert _schema(url) == {
        "tables": ["alembic_version", "dead_letters", "signals"],
        "signals_pk": ["log_id"],
        "dead_letters_refer_to": ("signals", ["log_id"]),
    }
    rows = query(url, "SELECT log_id FROM signals ORDER BY log_id")
    assert [r["log_id"] for r in rows] == ["m-done", "m-new", "m-parked"]
    assert query(url, "SELECT log_id FROM dead_letters") == [{"log_id": "m-parked"}]
    upgrade_to(url, "head")  # and up again: the keys come back from the log
    assert keys(url) == {"m-done", "m-new", "m-parked"}


def test_the_servers_schema_head_is_the_newest_migration() -> None:
    """The server checks the schema against a constant, so it need not load Alembic."""
    assert head_revision() == SCHEMA_HEAD


def test_0004_moves_leases_of_signals_in_flight_apart_and_back(url: str) -> None:
    upgrade_to(url, "0003")
    sqlite = url.startswith("sqlite")
    at = "2026-01-01 12:00:00.000000" if sqlite else CREATED
    query(url, "INSERT INTO idempotency_keys (log_id, created_at) VALUES ('m-flying', $1)", at)
    query(
        url,
        "INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, "
        "trace_id, kind, rule, mode, routed_agents, status, lease_owner, lease_expires_at, "
        "created_at, updated_at) VALUES ('m-flying', 's', 'h', '{}', '{}', $1, 't', 'one', 'r', "
        "'fallback', '[]', 'in_progress', 'replica-a', $2, $3, $4)",
        at,
        at,
        at,
        at,
    )
    upgrade_to(url, "head")
    leases = query(url, "SELECT log_id, owner FROM signal_leases")
    assert leases == [{"log_id": "m-flying", "owner": "replica-a"}]

    async def reclaim() -> list[str]:
        async with open_store(url) as store:
            return [r.log_id for r in await store.reclaim_expired("replica-b", 30, 10)]

    assert asyncio.run(reclaim()) == ["m-flying"]  # its lease had long expired
    downgrade_to(url, "0003")
    [row] = query(url, "SELECT lease_owner FROM signals WHERE log_id = 'm-flying'")
    assert row["lease_owner"] == "replica-b"
    done = query(url, "SELECT lease_owner FROM signals WHERE log_id = 'm-done'")
    assert done == [{"lease_owner": None}]


def test_0005_adds_the_routing_version_and_the_replay_tables_and_back(url: str) -> None:
    upgrade_to(url, "head")
    # Signals routed before 0005 have no version; new ones record theirs.
    assert query(url, "SELECT DISTINCT routing_version FROM signals") == [{"routing_version": None}]
    assert query(url, "SELECT count(*) AS n FROM replay_jobs") == [{"n": 0}]
    assert query(url, "SELECT count(*) AS n FROM replay_attempts") == [{"n": 0}]
    downgrade_to(url, "0004")
    assert "replay_jobs" not in _schema(url)["tables"]
    assert "replay_attempts" not in _schema(url)["tables"]
    upgrade_to(url, "head")
    assert asyncio.run(_revision(url)) == SCHEMA_HEAD


def _keys_and_indexes(url: str) -> dict[str, Any]:
    def read(conn: Connection) -> dict[str, Any]:
        inspector = inspect(conn)
        found: dict[str, Any] = {}
        for table in ("signals", "signal_leases"):
            found[f"{table} key"] = inspector.get_pk_constraint(table)["constrained_columns"]
            for index in inspector.get_indexes(table):
                # Descending columns (the older indexes) show in column_sorting, where reported.
                sorting = index.get("column_sorting") or {}
                found[index["name"]] = [
                    f"{c} {' '.join(sorting.get(c, ())) or 'asc'}" for c in index["column_names"]
                ]
        return found

    async def run() -> dict[str, Any]:
        async with open_engine(url) as engine, engine.connect() as conn:
            return await conn.run_sync(read)

    return asyncio.run(run())


def test_0006_keys_the_log_and_its_leases_in_time_order_and_back(url: str) -> None:
    upgrade_to(url, "0005")
    before = _keys_and_indexes(url)
    upgrade_to(url, "head")
    assert _keys_and_indexes(url) == {
        "signals key": ["created_at", "log_id"],
        "signal_leases key": ["created_at", "log_id"],
        "ix_signals_sender_created": ["sender_id asc", "created_at asc", "log_id asc"],
        "ix_signals_kind_created": ["kind asc", "created_at asc"],
        "ix_signal_leases_expires": ["expires_at asc"],
    }

    async def use() -> tuple[Status | None, bool, list[str], list[str]]:
        async with open_store(url) as store:
            done = await store.get("m-done")  # found through its key
            flying = await store.claim(signal("m-flying"), PLAN, "f" * 32, "gone", -1)
            taken = await store.reclaim_expired("replica-b", 30, 10)  # its lease had expired
            letters = await store.list_dead_letters(DeadLetterQuery(limit=10))
            return (
                done.status if done else None,
                flying.won,
                [r.log_id for r in taken],
                [e.log_id for e in letters.items],
            )

    assert asyncio.run(use()) == (Status.DELIVERED, True, ["m-flying"], ["m-parked"])
    downgrade_to(url, "0005")
    assert _keys_and_indexes(url) == before
    rows = query(url, "SELECT log_id FROM signals ORDER BY log_id")
    assert [r["log_id"] for r in rows] == ["m-done", "m-flying", "m-parked"]
    assert query(url, "SELECT log_id, owner FROM signal_leases") == [
        {"log_id": "m-flying", "owner": "replica-b"}
    ]


def test_0007_leaves_room_in_the_logs_pages_for_the_outcome_and_back(url: str) -> None:
    upgrade_to(url, "0006")
    sqlite = url.startswith("sqlite")

    def storage() -> list[str]:
        """Postgres: the table's storage settings; SQLite, which has none: its columns, which
        the migration must leave as they are."""
        if sqlite:
            return [r["name"] for r in query(url, "SELECT name FROM pragma_table_info('signals')")]
        [row] = query(url, "SELECT reloptions FROM pg_class WHERE relname = 'signals'")
        return list(row["reloptions"] or [])

    before = storage()
    assert sqlite or before == ["fillfactor=70"]
    upgrade_to(url, "0007")
    assert storage() == (before if sqlite else ["fillfactor=40"])
    rows = query(url, "SELECT log_id FROM signals ORDER BY log_id")
    assert [r["log_id"] for r in rows] == ["m-done", "m-parked"]
    downgrade_to(url, "0006")
    assert storage() == before


def test_0008_adds_each_signals_page_bytes_empty_for_old_rows_and_back(url: str) -> None:
    upgrade_to(url, "0007")

    def columns() -> list[str]:
        if url.startswith("sqlite"):
            rows = query(url, "SELECT name FROM pragma_table_info('signals')")
            return [r["name"] for r in rows]
        rows = query(
            url,
            "SELECT column_name AS name FROM information_schema.columns"
            " WHERE table_name = 'signals' ORDER BY ordinal_position",
        )
        return [r["name"] for r in rows]

    before = columns()
    upgrade_to(url, "0008")
    assert columns() == [*before, "page_bytes"]
    rows = query(url, "SELECT log_id, page_bytes FROM signals ORDER BY log_id")
    assert rows
    assert all(r["page_bytes"] is None for r in rows)  # measured as before
    downgrade_to(url, "0007")
    assert columns() == before
