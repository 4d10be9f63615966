"""``python -m bench.prune_cost``: what ``router-service prune`` costs when the old end of the log
holds signals it must keep (each with a pending dead letter), on Postgres and on SQLite.

Each backend gets a fresh migrated database, created and dropped here: ``--kept`` finished
signals with a pending dead letter, the oldest, then ``--prunable`` finished signals after them,
all older than the retention. The command is run as an operator runs it (``prune
--older-than-days 30 --batch N``) and timed from start to exit; a second run, with nothing left
to delete, times the walk over the kept signals alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.environment import VENV_BIN, create_database, database_url, drop_database

# Every signal 40 days old or more (1 second apart), the retention 30 days. The oldest are the
# highest n: the kept signals (with a pending dead letter) are n in (prunable, prunable + kept].
FILL_KEYS = """
INSERT INTO idempotency_keys (log_id, created_at)
SELECT 'p-' || n, now() - interval '40 days' - n * interval '1 second'
  FROM generate_series(1, $1::int) AS n
"""
FILL_SIGNALS = """
INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, trace_id,
                     kind, rule, mode, routed_agents, status, created_at, updated_at)
SELECT log_id, 's', 'h', repeat('x', 300), '{}', created_at, 't', 'k', 'r', 'fallback', '[]',
       'delivered', created_at, created_at
  FROM idempotency_keys
"""
FILL_DEAD_LETTERS = """
INSERT INTO dead_letters (log_id, agent, kind, mode, error, attempts, replay_count, status,
                          created_at)
SELECT 'p-' || n, 'a', 'k', 'fallback', 'down', 1, 0, 'pending', now()
  FROM generate_series($1::int + 1, $2::int) AS n
"""


async def _fill_postgres(url: str, kept: int, prunable: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(FILL_KEYS, kept + prunable)
        await conn.execute(FILL_SIGNALS)
        await conn.execute(FILL_DEAD_LETTERS, prunable, kept + prunable)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def _fill_sqlite(path: Path, kept: int, prunable: int) -> None:
    def at(n: int) -> str:  # SQLAlchemy's text for a DateTime on SQLite, in UTC
        seconds = 40 * 86_400 + n
        moment = time.gmtime(time.time() - seconds)
        return time.strftime("%Y-%m-%d %H:%M:%S.000000", moment)

    rows = [(f"p-{n}", at(n)) for n in range(1, kept + prunable + 1)]
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO idempotency_keys (log_id, created_at) VALUES (?, ?)", rows)
        db.executemany(
            "INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts,"
            " trace_id, kind, rule, mode, routed_agents, status, created_at, updated_at)"
            " VALUES (?, 's', 'h', ?, '{}', ?, 't', 'k', 'r', 'fallback', '[]', 'delivered', ?, ?)",
            [(log_id, "x" * 300, moment, moment, moment) for log_id, moment in rows],
        )
        db.executemany(
            "INSERT INTO dead_letters (log_id, agent, kind, mode, error, attempts, replay_count,"
            " status, created_at) VALUES (?, 'a', 'k', 'fallback', 'down', 1, 0, 'pending', ?)",
            rows[prunable:],
        )
        db.execute("ANALYZE")


def _router(url: str, *args: str) -> tuple[float, str]:
    """``router-service ARGS`` on the database at ``url``: seconds to exit, last output line."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(VENV_BIN / "router-service"), *args],
        env=dict(os.environ, DATABASE_URL=url, LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def _measure(url: str, batch: int) -> list[str]:
    prune = ("prune", "--older-than-days", "30", "--batch", str(batch))
    first, said = _router(url, *prune)
    again, said_again = _router(url, *prune)
    return [f"{first:.2f} s ({said})", f"{again:.2f} s ({said_again})"]


def main(admin_url: str, kept: int, prunable: int, batch: int) -> None:
    figures: dict[str, list[str]] = {}
    name = f"prune_cost_{secrets.token_hex(3)}"
    create_database(admin_url, name)
    url = database_url(admin_url, name)
    try:
        _router(url, "migrate")
        asyncio.run(_fill_postgres(url, kept, prunable))
        figures["Postgres"] = _measure(url, batch)
    finally:
        drop_database(admin_url, name)
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "router.db"
        _router(f"sqlite:///{path}", "migrate")
        _fill_sqlite(path, kept, prunable)
        figures["SQLite"] = _measure(f"sqlite:///{path}", batch)
    print(f"prune --batch {batch}: {kept:,} old signals kept, {prunable:,} to delete after them")
    print("| backend | first run | second run (nothing to delete) |\n|---|---|---|")
    for backend, (first, again) in figures.items():
        print(f"| {backend} | {first} | {again} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.prune_cost", description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--kept", type=int, default=200_000)
    parser.add_argument("--prunable", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    options = parser.parse_args()
    main(options.postgres_url, options.kept, options.prunable, options.batch)
