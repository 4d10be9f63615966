"""``python -m bench.outcome_plan``: what an outcome batch costs once the log has grown, with
plans cached while it was empty: the statement before migration 0004 (a join on ``unnest``)
against today's (``executemany`` by full key). One fresh database, created and dropped here.

Both statements run eight times on the empty log (Postgres switches a prepared statement to its
generic plan after five), then 20 batches of 16 outcomes each are timed on the empty log, and
again after 50,000 rows were added without ANALYZE."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime

import asyncpg

from router_service.adapters.db import pg_statements as sql

BEFORE_0004 = """
UPDATE signals AS s
   SET status = v.status, results = v.results::jsonb, response = v.response::jsonb,
       latency_ms = v.latency_ms, updated_at = $6
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])
       AS v(log_id, status, results, response, latency_ms)
 WHERE s.log_id = v.log_id AND (s.status = 'in_progress') IS TRUE
"""
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
BATCH, BATCHES, GROWN = 16, 20, 50_000
INSERT = (
    "INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, "
    "trace_id, kind, rule, mode, routed_agents, status, created_at, updated_at) "
    "SELECT n, 's', 'h', repeat('x', 300), '{}', now(), 't', 'k', 'r', 'fallback', '[]', $2, "
    "$3, now() FROM unnest($1::text[]) AS n"
)


async def _old(conn: asyncpg.Connection, ids: list[str]) -> None:
    n = len(ids)
    now = datetime.now(UTC)
    await conn.execute(
        BEFORE_0004, ids, ["delivered"] * n, ["[]"] * n, ["null"] * n, [1.0] * n, now
    )


async def _new(conn: asyncpg.Connection, ids: list[str]) -> None:
    now = datetime.now(UTC)
    await conn.executemany(
        sql.RECORD, [(i, CREATED, "delivered", "[]", "null", 1.0, now) for i in ids]
    )


async def _timed(conn: asyncpg.Connection, label: str, write: object) -> float:
    ids = [f"{label}-{secrets.token_hex(4)}-{n}" for n in range(BATCH * BATCHES)]
    await conn.execute(INSERT, ids, "in_progress", CREATED)
    started = time.perf_counter()
    for b in range(BATCHES):
        await write(conn, ids[b * BATCH : (b + 1) * BATCH])  # type: ignore[operator]
    return (time.perf_counter() - started) / BATCHES * 1000


async def main(admin_url: str) -> None:
    name = f"outcome_plan_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        env = dict(os.environ, DATABASE_URL=url)
        subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
            [sys.executable, "-m", "router_service", "migrate"],
            env=env,
            check=True,
            capture_output=True,
        )
        conn = await asyncpg.connect(url)
        try:
            for n in range(8):  # cache both plans on the empty log
                await conn.execute(INSERT, [f"w-old-{n}", f"w-new-{n}"], "in_progress", CREATED)
                await _old(conn, [f"w-old-{n}"])
                await _new(conn, [f"w-new-{n}"])
            figures = {"empty": {}, "grown": {}}  # type: dict[str, dict[str, float]]
            for label, write in (("before 0004", _old), ("now", _new)):
                figures["empty"][label] = await _timed(conn, "e", write)
            await conn.execute(INSERT, [f"g-{n}" for n in range(GROWN)], "delivered", CREATED)
            for label, write in (("before 0004", _old), ("now", _new)):
                figures["grown"][label] = await _timed(conn, "g", write)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    print(
        f"outcome batch of {BATCH}, plans cached on the empty log (ms per batch, commit included)"
    )
    print("| statement | empty log | +50,000 rows |\n|---|---|---|")
    for label in ("before 0004", "now"):
        print(f"| {label} | {figures['empty'][label]:.2f} | {figures['grown'][label]:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.outcome_plan", description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(main(parser.parse_args().postgres_url))
