"""Databases in tests: made for a test (a throwaway Postgres database or a SQLite file, empty or
migrated), and reached directly for assertions and clean-up, beside (not through) the router.

Postgres is never skipped: when the server is unreachable, the tests that need it fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from router_service.adapters.db.migrate import upgrade
from router_service.config.settings import Settings

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# ------------------------------------------------------------------------------- made for a test


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file at ``path``, as an operator writes it (no driver named)."""
    return f"sqlite:///{path}"


def service_url(url: str) -> str:
    """The URL as the service spells it (an async driver), from a test's plain one."""
    return Settings(_env_file=None, database_url=url).database_url  # type: ignore[call-arg]


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def drop_database(name: str) -> None:
    """Drop the Postgres database ``name`` if there is one, ending its connections."""
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def scratch_database(backend: str, directory: Path | None = None) -> Iterator[str]:
    """The URL of a new, empty database of ``backend`` ("postgres" or "sqlite", a file in
    ``directory``), dropped afterwards."""
    name = f"router_test_{secrets.token_hex(4)}"
    if backend == "sqlite":
        assert directory is not None
        yield sqlite_url(directory / f"{name}.db")
        return
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        drop_database(name)


@contextmanager
def migrated_database(backend: str, directory: Path | None = None) -> Iterator[str]:
    """``scratch_database``, taken to the head revision by the migrations."""
    with scratch_database(backend, directory) as url:
        upgrade(service_url(url))
        yield url


# ------------------------------------------------------------------------------ reached directly


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database
    return database


async def _pg(url: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=10)
    try:
        return [dict(r) for r in await conn.fetch(statement, *args)]
    finally:
        await conn.close()


def query(url: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    """Run one statement; parameters are ``$1``-style on both backends."""
    if _is_sqlite(url):
        sql = statement
        for index in range(len(args), 0, -1):
            sql = sql.replace(f"${index}", "?")
        with sqlite3.connect(_sqlite_path(url)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
    return asyncio.run(_pg(url, statement, *args))


def wipe(url: str) -> None:
    if _is_sqlite(url):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            conn.execute("DELETE FROM replay_attempts")
            conn.execute("DELETE FROM replay_jobs")
            conn.execute("DELETE FROM dead_letters")
            conn.execute("DELETE FROM signal_leases")
            conn.execute("DELETE FROM signals")
            conn.execute("DELETE FROM idempotency_keys")
        return
    asyncio.run(
        _pg(
            url,
            "TRUNCATE replay_attempts, replay_jobs, dead_letters, signal_leases, signals, "
            "idempotency_keys",
        )
    )
