"""After ``alembic upgrade head``, the database is exactly what ``adapters/db/tables.py`` declares,
on both backends: the migrations and the tables the stores are written against cannot drift.

Alembic's autogenerate comparison does the work: tables, columns (names, types, nullability),
indexes (names and columns), unique constraints and foreign keys. It finds no difference on
either backend today, so no dialect noise needs filtering; if a future Alembic or dialect
reports a spurious one, filter it here by name with the reason. Autogenerate does not compare
primary keys, so they are checked with the inspector beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from router_service.adapters.db.tables import metadata
from tests.support.db import migrated_database
from tests.support.store import open_engine


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A new database of ``backend`` taken to head by the migrations alone."""
    with migrated_database(backend, tmp_path) as url:
        yield url


def _on_database(url: str, inspect_with: Any) -> Any:
    async def run() -> Any:
        async with open_engine(url) as engine, engine.connect() as conn:
            return await conn.run_sync(inspect_with)

    return asyncio.run(run())


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _primary_keys(connection: Connection) -> dict[str, list[str]]:
    inspector = inspect(connection)
    return {
        table: inspector.get_pk_constraint(table)["constrained_columns"]
        for table in sorted(inspector.get_table_names())
        if table != "alembic_version"
    }


def test_the_migrated_schema_has_no_difference_from_the_declared_tables(migrated_url: str) -> None:
    assert _on_database(migrated_url, _differences) == []


def test_the_migrated_primary_keys_are_the_declared_ones(migrated_url: str) -> None:
    declared = {
        name: [c.name for c in table.primary_key.columns]
        for name, table in sorted(metadata.tables.items())
    }
    assert _on_database(migrated_url, _primary_keys) == declared
