"""Alembic environment: runs the migrations through the same async engine the service uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from router_service.adapters.db.engine import ensure_database_waiting, migration_engine
from router_service.adapters.db.tables import metadata
from router_service.config.settings import Settings

config = context.config


def _settings() -> Settings:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return Settings(database_url=url) if url else Settings()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate(settings: Settings) -> None:
    created = await ensure_database_waiting(settings.database_url, settings.startup_db_wait_s)
    if created:
        print(created)
    engine = migration_engine(
        settings.database_url,
        connect_timeout_s=settings.db_connect_timeout_s,
        busy_timeout_ms=settings.db_statement_timeout_ms,
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_migrate(_settings()))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run against a database")
run_migrations_online()
