"""One store per process, on the backend the URL names; only that backend's driver is loaded.

The Postgres store needs asyncpg alone: a server on Postgres never imports SQLAlchemy or
Alembic (about 28 MB of its memory). The SQLite store runs on SQLAlchemy Core.
"""

from __future__ import annotations

from dataclasses import dataclass

from router_service.service.ports import Events, Store


@dataclass(frozen=True, slots=True)
class StoreSettings:
    database_url: str
    pool_size: int  # the process's whole connection budget on Postgres
    sqlite_pool_size: int
    sqlite_max_overflow: int
    connect_timeout_s: float
    statement_timeout_ms: int


def is_sqlite(database_url: str) -> bool:
    return database_url.startswith("sqlite")


def open_store(settings: StoreSettings, events: Events) -> Store:
    if is_sqlite(settings.database_url):
        from router_service.adapters.db.engine import sqlite_engine, sqlite_writer_engine
        from router_service.adapters.db.sqlite import SqliteStore
        from router_service.adapters.db.sqlite_writer import SqliteWriter

        engine = sqlite_engine(
            settings.database_url,
            pool_size=settings.sqlite_pool_size,
            max_overflow=settings.sqlite_max_overflow,
            timeout_s=settings.connect_timeout_s,
            busy_timeout_ms=settings.statement_timeout_ms,
        )
        writer = SqliteWriter(
            sqlite_writer_engine(
                settings.database_url, busy_timeout_ms=settings.statement_timeout_ms
            ),
            wait_s=settings.statement_timeout_ms / 1000,
        )
        return SqliteStore(engine, writer, events, settings.sqlite_pool_size)
    from router_service.adapters.db.pg_pool import PgPool, PoolSettings, asyncpg_dsn
    from router_service.adapters.db.postgres import PgStore

    pool = PgPool(
        PoolSettings(
            dsn=asyncpg_dsn(settings.database_url),
            max_size=settings.pool_size,
            connect_timeout_s=settings.connect_timeout_s,
            statement_timeout_ms=settings.statement_timeout_ms,
        ),
        events,
    )
    return PgStore(pool)
