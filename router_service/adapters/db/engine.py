"""Engines, database creation and the schema check, for Postgres (asyncpg) and SQLite."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from router_service.config.settings import Settings
from router_service.jsonwire import dumps, loads

_NUL = b"\\u0000"


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def json_serializer(value: Any) -> str:
    """orjson, except that NUL (which JSONB refuses) becomes U+FFFD in agent answers."""
    data = dumps(value)
    if _NUL in data:
        data = dumps(_strip_nul(value))
    return data.decode()


def is_postgres(settings: Settings) -> bool:
    return make_url(settings.database_url).get_backend_name() == "postgresql"


def session_settings(settings: Settings) -> dict[str, str]:
    """What every Postgres connection of the router sets: a stuck statement or lock cannot
    stall it, and ``pg_stat_activity`` names it."""
    return {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "lock_timeout": str(settings.db_statement_timeout_ms),
        "application_name": "router-service",
    }


def create_engine(settings: Settings) -> AsyncEngine:
    """SQLAlchemy's engine: every statement but the hot path's two (``hotpath.py``)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_connect_timeout_s,
        json_serializer=json_serializer,
        json_deserializer=loads,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
            "server_settings": session_settings(settings),
        },
    )
    _ping_after_idle(engine, settings.db_ping_idle_s)
    return engine


def _ping_after_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Pre-ping only connections that sat idle (a restart may have killed them); a busy pool
    pays no extra round trip per checkout, unlike ``pool_pre_ping``."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise DisconnectionError("stale pooled connection") from exc  # the pool reconnects


def _sqlite_engine(settings: Settings) -> AsyncEngine:
    database = make_url(settings.database_url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_connect_timeout_s,
        json_serializer=json_serializer,
        json_deserializer=loads,
        connect_args={"timeout": settings.db_statement_timeout_ms / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; FULL makes every commit durable on disk.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={settings.db_statement_timeout_ms}")
        cursor.close()

    return engine


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
