"""Direct database access for assertions and clean-up, beside (not through) the router."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url


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
