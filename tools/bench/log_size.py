"""``python -m bench.log_size``: the router on a grown log against the router on an empty one, in
the same minutes.

A soak compares a window with one ten minutes earlier, so it cannot tell a log that slows the
router from a machine that slowed meanwhile. This compares two routers that differ only in the
log under them, window by window, in alternating order (grown, empty, empty, grown, ...):

- two databases on the same Postgres server, both migrated; the *grown* one filled with
  ``--rows`` finished signals and their keys in one statement per batch (no router needed, so a
  log of millions of rows takes minutes), plus as many leases inserted and deleted, the dead
  rows a log leaves behind where nothing vacuums;
- two router processes (``serve --workers 1``, both pinned to the benchmark's router CPU),
  started together, so they are the same age; one nginx agent answering at once;
- before each of its windows the *empty* log is truncated, so it stays empty;
- in each window, wrk at ``--connections`` for ``--window`` seconds, every request a new signal;
  read around it: the router's CPU, the CPU of the Postgres backends serving its database, and
  the blocks Postgres read into ``shared_buffers`` for that database (``pg_stat_database``).

Printed: one line per window and the medians of each log. Both databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import asyncpg

from bench import probes
from bench.environment import (
    DEFAULT_POSTGRES,
    create_database,
    database_url,
    drop_database,
    migrate,
    server_statement,
)
from bench.install import ensure_debian_tools
from bench.targets import RouterTarget, Upstream, routing_yaml
from bench.wrk import run_wrk

Log = Literal["grown", "empty"]
BATCH = 200_000

# Finished signals and their keys, as the router leaves them: the key's hash order is random,
# the log's time order ascending (from $3, a microsecond apart), one sender and kind. Only the
# public table names and columns: nothing depends on how the store writes.
FILL = """
WITH k AS (
    INSERT INTO idempotency_keys (log_id, created_at)
    SELECT encode(sha256(convert_to('fill ' || i, 'UTF8')), 'hex'),
           $3::timestamptz + i * interval '1 microsecond'
      FROM generate_series($1::int, $2::int) AS i
    RETURNING log_id, created_at
)
INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, trace_id,
                     kind, rule, mode, routed_agents, status, results, response, latency_ms,
                     created_at, updated_at, routing_version)
SELECT log_id, 'bench-fill', log_id,
       '{"event":"order.created","n":12345,"note":"' || repeat('x', 200) || '"}',
       '{}'::jsonb, created_at, substr(log_id, 1, 32), 'default', 'default', 'first_success',
       '["bench"]'::jsonb, 'delivered',
       '[{"agent":"bench","ok":true,"status_code":200,"attempts":1,"latency_ms":0.6,'
       '"response":{"ok":true},"error":null}]'::jsonb,
       '{"ok":true}'::jsonb, 1.0, created_at, created_at, 'fill'
  FROM k
"""
# The leases of those signals, taken, then released by a second statement (a statement's own
# CTEs do not see the rows it inserts): dead rows until something vacuums.
TAKE_LEASES = """
INSERT INTO signal_leases (log_id, created_at, owner, expires_at)
SELECT log_id, created_at, 'fill', created_at + interval '30 seconds'
  FROM signals WHERE created_at >= $1 AND created_at < $2
"""
RELEASE_LEASES = "DELETE FROM signal_leases WHERE created_at >= $1 AND created_at < $2"
EMPTY = "TRUNCATE signal_leases, dead_letters, signals, idempotency_keys"


@dataclass(frozen=True, slots=True)
class LogWindow:
    log: Log
    rows: int  # in the log when the window started
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    router_cpu_us: float  # per 2xx answer
    db_cpu_us: float  # the backends serving this log's database, per 2xx answer
    reads: float  # blocks read into shared_buffers for this database, per 2xx answer
    reads_by_relation: dict[str, float]  # the same for each table's heap and each index


@dataclass(frozen=True, slots=True)
class WindowPlan:
    connections: int
    seconds: int


async def fill(url: str, rows: int) -> None:
    """``rows`` finished signals and their keys into the migrated log of ``url``, and as many
    leases taken and released (dead rows until a vacuum)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for first in range(1, rows + 1, BATCH):
            last = min(rows, first + BATCH - 1)
            await conn.execute(FILL, first, last, start)
            batch = [start + timedelta(microseconds=i) for i in (first, last + 1)]
            await conn.execute(TAKE_LEASES, *batch)
            await conn.execute(RELEASE_LEASES, *batch)
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# Blocks read into shared_buffers: the database's total, and each table's heap and each index.
READS = """
SELECT 'all' AS name, blks_read AS n FROM pg_stat_database WHERE datname = current_database()
UNION ALL SELECT relname, heap_blks_read FROM pg_statio_user_tables
UNION ALL SELECT indexrelname, idx_blks_read FROM pg_statio_user_indexes
"""


async def _reading(url: str, *, count: bool) -> tuple[int, dict[str, int]]:
    """When asked, the log's rows (0 otherwise), then the blocks read so far by relation
    (``all``: the whole database). Counting reads the key table, so it comes first, and its
    reads are flushed to the counters before they are read: a backend flushes its statistics
    at most once a second otherwise, and the rest when it exits, which would charge them to
    the window. The router's own backends cannot be made to flush: an idle one holds its
    counters for up to 10 s (Postgres 15), so a window's last second may count in the next
    window; over windows of a minute that is small."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        rows = 0
        if count:
            rows = await conn.fetchval("SELECT count(*) FROM idempotency_keys")
            await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed once idle
        reads = {row["name"]: int(row["n"] or 0) for row in await conn.fetch(READS)}
        return int(rows), reads
    finally:
        await conn.close()


def _window(
    log: Log, router: RouterTarget, admin_url: str, database: str, plan: WindowPlan
) -> LogWindow:
    assert router.process is not None
    url = database_url(admin_url, database)
    pids = probes.postgres_backends(admin_url, database)
    db_before = {pid: probes.cpu_seconds([pid]) for pid in pids}
    router_before = probes.tree_cpu_seconds(router.process.pid)
    rows, reads_before = asyncio.run(_reading(url, count=True))
    done = run_wrk(router.base_url, router.request, plan.connections, plan.seconds)
    router_s = probes.tree_cpu_seconds(router.process.pid) - router_before
    db_s = sum(
        probes.cpu_seconds([pid]) - db_before.get(pid, 0.0)
        for pid in probes.postgres_backends(admin_url, database)
    )
    reads = asyncio.run(_reading(url, count=False))[1]
    ok = max(done.ok, 1)
    by_relation = {
        name: (count - reads_before.get(name, 0)) / ok
        for name, count in reads.items()
        if name != "all" and count > reads_before.get(name, 0)
    }
    return LogWindow(
        log, rows, done.throughput_rps, done.p50_ms, done.p99_ms,
        router_s / ok * 1e6, db_s / ok * 1e6, (reads["all"] - reads_before["all"]) / ok,
        by_relation,
    )  # fmt: skip


def order(rounds: int) -> Iterator[Log]:
    """grown, empty, empty, grown, ...: each log as often first as second."""
    for index in range(rounds):
        yield from ("grown", "empty") if index % 2 == 0 else ("empty", "grown")


def compare(
    admin_url: str, rows: int, rounds: int, seconds: int, connections: int, workdir: Path
) -> list[LogWindow]:
    """Both logs, both routers, the windows; everything is stopped and dropped at the end."""
    names: dict[Log, str] = {log: f"router_logsize_{log}_{secrets.token_hex(3)}"
                             for log in ("grown", "empty")}  # fmt: skip
    urls = {log: database_url(admin_url, name) for log, name in names.items()}
    plan = WindowPlan(connections, seconds)
    upstream = Upstream(workdir)
    routers: dict[Log, RouterTarget] = {}
    try:
        routing = workdir / "routing.yaml"
        routing.write_text(routing_yaml(upstream.agent_url))
        for log, name in names.items():
            create_database(admin_url, name)
            reason = migrate(urls[log], routing, workdir)
            if reason:
                raise RuntimeError(f"migrate failed: {reason}")
        _log(f"filling the grown log with {rows:,} signals")
        asyncio.run(fill(urls["grown"], rows))
        for log in names:
            routers[log] = RouterTarget(f"router-{log}", f"router ({log} log)", urls[log], routing)
            routers[log].start(workdir)
        for log in names:  # a first request on each: connections and prepared statements
            run_wrk(routers[log].base_url, routers[log].request, connections, 1)
        windows = []
        for log in order(rounds):
            if log == "empty":
                asyncio.run(server_statement(urls[log], EMPTY))
            window = _window(log, routers[log], admin_url, names[log], plan)
            _log(line(window))
            windows.append(window)
        return windows
    finally:
        for router in routers.values():
            router.stop()
        upstream.stop()
        for name in names.values():
            drop_database(admin_url, name)


def line(window: LogWindow) -> str:
    return (
        f"{window.log} log ({window.rows:,} rows): {window.throughput_rps:,.0f} req/s, "
        f"p50 {window.p50_ms:.2f} ms, p99 {window.p99_ms:.2f} ms, router "
        f"{window.router_cpu_us:,.0f} µs/signal, PG {window.db_cpu_us:,.0f} µs/signal, "
        f"PG reads {window.reads:.2f}/signal"
    )


def summary(windows: list[LogWindow]) -> list[str]:
    """The medians of each log's windows."""
    lines = []
    for log in ("grown", "empty"):
        mine = [w for w in windows if w.log == log]
        if not mine:
            continue
        median = statistics.median
        lines.append(
            f"{log} log, median of {len(mine)}: "
            f"{median(w.throughput_rps for w in mine):,.0f} req/s, "
            f"p99 {median(w.p99_ms for w in mine):.2f} ms, router "
            f"{median(w.router_cpu_us for w in mine):,.0f} µs/signal, PG "
            f"{median(w.db_cpu_us for w in mine):,.0f} µs/signal, PG reads "
            f"{median(w.reads for w in mine):.2f}/signal ({_where(mine)})"
        )
    return lines


def _where(windows: list[LogWindow], top: int = 3) -> str:
    """The relations read most, per signal over these windows."""
    names = {name for w in windows for name in w.reads_by_relation}
    mean = {n: statistics.fmean(w.reads_by_relation.get(n, 0.0) for w in windows) for n in names}
    ranked = sorted(mean.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} {value:.2f}" for name, value in ranked) or "none"


def _log(text: str) -> None:
    print(f"log_size: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.log_size", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="the grown log's signals")
    parser.add_argument("--rounds", type=int, default=4, help="windows of each log")
    parser.add_argument("--window", type=int, default=40, help="seconds per window")
    parser.add_argument("--connections", type=int, default=8, help="wrk's connections")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="the server (admin URL)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.rounds < 1 or args.window < 1 or args.connections < 1:
        parser.error("--rows, --rounds, --window and --connections are at least 1")
    ensure_debian_tools()
    workdir = Path(tempfile.mkdtemp(prefix="router-logsize-"))
    try:
        windows = compare(
            args.postgres_url, args.rows, args.rounds, args.window, args.connections, workdir
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for text in [*map(line, windows), *summary(windows)]:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
