"""``python -m bench.batch_cost``: the router's CPU for its two writes, one statement per row
against one batch, for batches of 1 to 8 rows: the claim (``fetchval`` against ``fetchmany``)
and the outcome (``execute`` against ``executemany``). The statements are the router's own
(``pg_statements.CLAIM`` and ``RECORD``), on a fresh migrated database, created and dropped
here; CPU is this process's, per row, best of seven rounds of 1,000 rows, on uvloop as the
router runs.

The group commit writes a lone signal with the single statement and a batch with the batched
one; this says where a batch starts to pay (``group_commit.py`` writes a batch of one as a lone
row).
"""

from __future__ import annotations

import argparse
import resource
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from bench.environment import create_database, database_url, drop_database, migrate
from bench.outcome_plan import CREATED, INSERT
from bench.targets import routing_yaml
from router_service.adapters.db import pg_statements as sql

SIZES = (1, 2, 4, 8)
ROWS, REPEATS = 1000, 7


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _claim(n: int) -> tuple[object, ...]:
    now = datetime.now(UTC)
    log_id = f"c-{secrets.token_hex(8)}-{n}"
    return (log_id, "sender", "hash", '{"a":1}', "{}", now, "trace", "kind", "rule",
            "fallback", '["a"]', "owner", now + timedelta(seconds=30), now, "v1")  # fmt: skip


async def _timed(
    rows: list[Any],
    size: int,
    batched: bool,
    single: Callable[[Any], Awaitable[object]],
    batch: Callable[[list[Any]], Awaitable[object]],
) -> float:
    """CPU seconds per row, writing ``rows`` ``size`` at a time: in batches, or row by row."""
    started = _cpu()
    for r in range(0, len(rows), size):
        chunk = rows[r : r + size]
        if batched:
            await batch(chunk)
        else:
            for row in chunk:
                await single(row)
    return (_cpu() - started) / len(rows)


async def _claims(conn: asyncpg.Connection, size: int, batched: bool) -> float:
    rows = [_claim(n) for n in range(ROWS)]
    return await _timed(
        rows, size, batched,
        lambda row: conn.fetchval(sql.CLAIM, *row),
        lambda chunk: conn.fetchmany(sql.CLAIM, chunk),
    )  # fmt: skip


async def _outcomes(conn: asyncpg.Connection, size: int, batched: bool) -> float:
    ids = [f"b-{secrets.token_hex(6)}-{n}" for n in range(ROWS)]
    await conn.execute(INSERT, ids, "in_progress", CREATED)
    now = datetime.now(UTC)
    rows = [(i, CREATED, "delivered", '[{"agent":"a"}]', '{"ok":true}', 1.5, now) for i in ids]
    return await _timed(
        rows, size, batched,
        lambda row: conn.execute(sql.RECORD, *row),
        lambda chunk: conn.executemany(sql.RECORD, chunk),
    )  # fmt: skip


WRITES = {"claim": _claims, "outcome": _outcomes}


async def _measure(url: str) -> dict[tuple[str, int, bool], float]:
    conn = await asyncpg.connect(url)
    try:
        best: dict[tuple[str, int, bool], float] = {}
        for _ in range(REPEATS):  # interleaved, so that the machine's drift hits all alike
            for write, measure in WRITES.items():
                for size in SIZES:
                    for batched in (False, True):
                        took = await measure(conn, size, batched)
                        key = (write, size, batched)
                        best[key] = min(best.get(key, took), took)
        return best
    finally:
        await conn.close()


def main(admin_url: str) -> int:
    name = f"batch_cost_{secrets.token_hex(3)}"
    url = database_url(admin_url, name)
    create_database(admin_url, name)
    try:
        with tempfile.TemporaryDirectory(prefix="batch-cost-") as workdir:
            routing = Path(workdir) / "routing.yaml"
            routing.write_text(routing_yaml("http://127.0.0.1:9/"))
            reason = migrate(url, routing, Path(workdir))
            if reason:
                print(f"migrate failed: {reason}", file=sys.stderr)
                return 1
        best = uvloop.run(_measure(url))
    finally:
        drop_database(admin_url, name)
    print(f"CPU per row (µs), best of {REPEATS} rounds of {ROWS:,} rows")
    print("| write | rows at a time | row by row | one batch |\n|---|---|---|---|")
    for write in WRITES:
        for size in SIZES:
            alone, batch = best[write, size, False] * 1e6, best[write, size, True] * 1e6
            print(f"| {write} | {size} | {alone:.1f} | {batch:.1f} |")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.batch_cost", description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    sys.exit(main(parser.parse_args().postgres_url))
