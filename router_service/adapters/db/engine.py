"""SQLAlchemy engines (the SQLite store, the migrations) and database creation.

The Postgres store does not use them: it runs on asyncpg alone (``pg_pool.py``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from router_service.adapters.db.records import json_column
from router_service.jsonwire import loads


def migration_engine(
    database_url: str, *, connect_timeout_s: float, busy_timeout_ms: int
) -> AsyncEngine:
    """The engine Alembic runs on, on either backend: one connection, no pool kept."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return sqlite_engine(
            database_url,
            pool_size=1,
            max_overflow=0,
            timeout_s=connect_timeout_s,
            busy_timeout_ms=busy_timeout_ms,
        )
    return create_async_engine(
        database_url,
        poolclass=NullPool,
        json_serializer=json_column,
        json_deserializer=loads,
        connect_args={
            "timeout": connect_timeout_s,
            "server_settings": {"application_name": "router-service migrate"},
        },
    )


def sqlite_engine(
    database_url: str, *, pool_size: int, max_overflow: int, timeout_s: float, busy_timeout_ms: int
) -> AsyncEngine:
    """The SQLite store's engine (aiosqlite): WAL, durable commits, foreign keys on."""
    database = make_url(database_url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=timeout_s,
        json_serializer=json_column,
        json_deserializer=loads,
        connect_args={"timeout": busy_timeout_ms / 1000},
    )
    _durable(engine.sync_engine, busy_timeout_ms)
    return engine


def sqlite_writer_engine(database_url: str, *, busy_timeout_ms: int) -> Engine:
    """The same database through the synchronous driver (pysqlite), for the store's writer
    thread (``sqlite_writer.py``): one connection, the same pragmas and column formats."""
    engine = create_engine(
        make_url(database_url).set(drivername="sqlite"),
        pool_size=1,
        max_overflow=0,
        json_serializer=json_column,
        json_deserializer=loads,
        connect_args={"timeout": busy_timeout_ms / 1000},
    )
    _durable(engine, busy_timeout_ms)
    return engine


def _durable(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; FULL makes every commit durable on disk (the
        # store's writer sets NORMAL for a claim's transaction alone: sqlite_writer.py).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()


_DB_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


async def ensure_database_waiting(database_url: str, wait_s: float) -> str | None:
    """``ensure_database``, retried while the server is not accepting connections yet."""
    import asyncio

    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    delay = 0.2
    while True:
        try:
            return await ensure_database(database_url)
        except (OSError, TimeoutError) as exc:
            if loop.time() + delay > give_up:
                raise
            print(f"waiting for the database: {exc}", file=sys.stderr)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def ensure_database(database_url: str) -> str | None:
    """Create the Postgres database when it does not exist; return a line saying so, or None."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or not url.database:
        return None
    import asyncpg

    name = url.database
    if not _DB_NAME.match(name):
        raise ValueError(f"refusing to create a database with the name {name!r}")
    conn = await asyncpg.connect(
        host=url.host or "localhost",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database="postgres",
        timeout=10,
    )
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return None
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"created database {name!r} on {url.host or 'localhost'}:{url.port or 5432}"
