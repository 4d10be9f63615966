"""A server on Postgres loads only what it runs: asyncpg, not SQLAlchemy or Alembic (the
migrations' tools), nor aiohttp (the tools' dependency, never the router's). Each costs memory
in every process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

PROGRAM = """
import asyncio, json, sys
from router_service.cli import main  # what `router-service serve` imports
from router_service.api.app import create_app
from router_service.config.settings import Settings

app = create_app(Settings(_env_file=None, database_url=sys.argv[1], api_key="k"))

async def serve_once() -> None:
    async with app.router.lifespan_context(app):
        await app.state.services.store.ping()

asyncio.run(serve_once())
print(json.dumps(sorted(m for m in ("sqlalchemy", "alembic", "aiohttp", "aiosqlite")
                        if m in sys.modules)))
"""


def _loaded(url: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_server_on_postgres_loads_neither_sqlalchemy_nor_alembic_nor_aiohttp(
    migrated: Callable[[str], str],
) -> None:
    assert _loaded(migrated("postgres")) == []


def test_a_server_on_sqlite_loads_sqlalchemy_for_its_store_but_not_alembic(
    migrated: Callable[[str], str],
) -> None:
    assert _loaded(migrated("sqlite")) == ["aiosqlite", "sqlalchemy"]
