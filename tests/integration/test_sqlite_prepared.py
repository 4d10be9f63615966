"""The SQLite writer's statements on the driver's cursor (``adapters/db/sqlite_prepared.py``),
on a real SQLite file: they store what SQLAlchemy's ``Connection.execute`` stores, byte for
byte, and the driver's errors reach the store as SQLAlchemy's."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import IntegrityError

from router_service.adapters.db import sqlite_statements as sql
from router_service.adapters.db.engine import sqlite_writer_engine
from router_service.adapters.db.sqlite_prepared import Prepared
from router_service.adapters.db.tables import dead_letters
from tests.support.db import migrated_database, service_url

CREATED = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


def dead_letter(log_id: str) -> dict[str, Any]:
    return {
        "log_id": log_id,
        "agent": "alpha",
        "kind": "one",
        "mode": "first_success",
        "error": "alpha: HTTP 400",
        "attempts": 1,
        "replay_count": 0,
        "status": "pending",
        "created_at": CREATED,
        "last_attempt_at": CREATED,
    }


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with migrated_database("sqlite", tmp_path) as url:
        writer = sqlite_writer_engine(service_url(url), busy_timeout_ms=0)
        try:
            yield writer
        finally:
            writer.dispose()


def claim_and_finish(conn: Connection, log_id: str, run: Any) -> tuple[bool, bool, int, int]:
    """A claim, a second claim of the same key, the outcome and a dead letter, each through
    ``run(statement, values)``; what each returned."""
    key = {"log_id": log_id, "created_at": CREATED}
    row = {
        **key,
        "sender_id": "sender-ü",
        "payload_hash": "f" * 64,
        "payload": '{"text":"hé \\u0000"}',
        "metadata": {"n": 1, "nested": [None, 1.5, "x"]},
        "signal_ts": CREATED - timedelta(seconds=3),
        "trace_id": "a" * 32,
        "kind": "one",
        "rule": "route-one",
        "mode": "first_success",
        "routed_agents": ["alpha", "beta"],
        "status": "in_progress",
        "updated_at": CREATED,
        "routing_version": None,
    }
    won = bool(run(sql.TAKE_KEY, key).fetchall())
    run(sql.ADD_LEASE, {**key, "owner": "owner-a", "expires_at": CREATED + timedelta(30)})
    run(sql.ADD_SIGNAL, row)
    again = bool(run(sql.TAKE_KEY, key).fetchall())
    finish = {"key_created_at": CREATED, "key_log_id": log_id}
    run(sql.END_LEASE, finish)
    outcome = {
        **finish,
        "new_status": "dead_lettered",
        "new_results": [{"agent": "alpha", "ok": False, "status_code": 400}],
        "new_response": None,  # JSON's null, as SQLAlchemy writes it
        "new_latency_ms": 12.25,
        "new_updated_at": CREATED + timedelta(milliseconds=7),
    }
    finished = run(sql.FINISH_SIGNAL, outcome).rowcount
    parked = len(run(sql.PARK, dead_letter(log_id)).fetchall())
    return won, again, finished, parked


def stored(engine: Engine, log_id: str) -> list[tuple[Any, ...]]:
    """Every column of every table's rows of ``log_id``, as SQLite holds them, typed."""
    database = make_url(str(engine.url)).database
    assert database is not None
    with sqlite3.connect(database) as raw:
        found: list[tuple[Any, ...]] = []
        for table in ("idempotency_keys", "signals", "signal_leases", "dead_letters"):
            columns = [c[1] for c in raw.execute(f"PRAGMA table_info({table})") if c[1] != "id"]
            typed = ", ".join(f"{c}, typeof({c})" for c in columns if c != "log_id")
            select = f"SELECT {typed} FROM {table} WHERE log_id = ?"  # noqa: S608 - our names
            found += raw.execute(select, (log_id,))
    return found


class CoreResult:
    """What ``claim_and_finish`` reads of a cursor, from SQLAlchemy's result."""

    def __init__(self, result: CursorResult[Any]) -> None:
        self.result = result
        self.rowcount = result.rowcount

    def fetchall(self) -> list[Any]:
        return list(self.result.all())


def test_prepared_statements_store_what_core_stores(engine: Engine) -> None:
    with engine.begin() as conn:
        core = claim_and_finish(conn, "core", lambda s, v: CoreResult(conn.execute(s, v)))
    prepared = Prepared()
    with engine.begin() as conn:
        on_cursor = claim_and_finish(conn, "prep", lambda s, v: prepared.execute(conn, s, v))
    assert core == on_cursor == (True, False, 1, 1)
    assert stored(engine, "prep") == stored(engine, "core")
    assert len(stored(engine, "core")) == 3  # the lease ended; the key, the log row, the letter


def test_a_refused_row_is_sqlalchemys_integrity_error_and_its_transaction_rolls_back(
    engine: Engine,
) -> None:
    """The writer's batches tell a row's error from the database's by SQLAlchemy's classes."""
    prepared = Prepared()
    letter = dead_letter("not-claimed")  # no key: the foreign key refuses it

    def lease_then_park() -> None:
        with engine.begin() as conn:
            lease = {"log_id": "rolled", "created_at": CREATED, "owner": "o"}
            prepared.execute(conn, sql.ADD_LEASE, {**lease, "expires_at": CREATED})
            prepared.execute(conn, sql.PARK, letter)

    with pytest.raises(IntegrityError):
        lease_then_park()
    assert stored(engine, "rolled") == []


def test_a_statement_whose_values_python_computes_is_refused(engine: Engine) -> None:
    """``replay_count`` has a Python default: left out, only SQLAlchemy's execution fills it."""
    letter = dead_letter("x")
    del letter["replay_count"]
    with engine.begin() as conn, pytest.raises(ValueError, match="computed at execution"):
        Prepared().execute(conn, dead_letters.insert(), letter)
