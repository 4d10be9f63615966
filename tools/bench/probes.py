"""What is read beside the load: CPU and memory from /proc, histograms from /metrics, rows.

CPU time of a server is the utime + stime of its process and every live descendant, plus the
cutime + cstime of each (the children it already reaped), in clock ticks. Memory is VmHWM (peak
resident set) and VmRSS summed over the same process tree.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import resource
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.targets import http

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_BUCKET = re.compile(r"^(?P<name>[a-z_]+)_bucket\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LE = re.compile(r'le="(?P<le>[^"]+)"')


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime + cutime + cstime of each process, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    return cpu_seconds(process_tree(root))


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class Memory:
    hwm_mb: float  # peak resident set (VmHWM), summed over the process tree
    rss_mb: float  # resident set now (VmRSS)


def tree_memory(root: int) -> Memory:
    pids = process_tree(root)
    hwm = sum(_status_kb(pid, "VmHWM") for pid in pids)
    rss = sum(_status_kb(pid, "VmRSS") for pid in pids)
    return Memory(hwm / 1024, rss / 1024)


# --------------------------------------------------------------------------- /metrics


Buckets = dict[float, float]  # upper bound -> cumulative count, summed over label sets


def histogram_buckets(text: str, name: str) -> Buckets:
    """The cumulative buckets of histogram ``name`` from Prometheus text, summed over labels."""
    buckets: Buckets = {}
    for line in text.splitlines():
        match = _BUCKET.match(line)
        if match is None or match["name"] != name:
            continue
        le = _LE.search(match["labels"])
        if le is None:
            continue
        bound = math.inf if le["le"] == "+Inf" else float(le["le"])
        buckets[bound] = buckets.get(bound, 0.0) + float(match["value"])
    return buckets


def bucket_delta(after: Buckets, before: Buckets) -> Buckets:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket of rank q.

    The first bucket's lower bound is 0; a rank in the +Inf bucket answers the highest finite
    bound. None for an empty histogram.
    """
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in ordered:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            if cumulative == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


def scrape(base_url: str) -> str:
    status, body = http("GET", base_url + "/metrics")
    return body.decode() if status == 200 else ""


# --------------------------------------------------------------------------- rows


async def _pg_fetchval(url: str, statement: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval(statement))
    finally:
        await conn.close()


def count_rows(database_url: str) -> int:
    """Rows of the ``signals`` table."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        with sqlite3.connect(path, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM signals").fetchone()[0])
    return asyncio.run(_pg_fetchval(database_url, "SELECT count(*) FROM signals"))


def settled_rows(database_url: str, timeout_s: float = 15.0) -> int:
    """The row count once it stops moving (requests in flight when the load stopped finish)."""
    last = count_rows(database_url)
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        time.sleep(0.3)  # the router finishes in-flight requests; nothing signals when it has
        now = count_rows(database_url)
        if now == last:
            return now
        last = now
    return last


async def _backend_pids(conn: asyncpg.Connection, database: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return [int(row["pid"]) for row in rows]


async def _checkpoints(conn: asyncpg.Connection) -> int:
    if await conn.fetchval("SELECT to_regclass('pg_catalog.pg_stat_checkpointer')"):
        query = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"  # 17 and later
    else:
        query = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    return int(await conn.fetchval(query))


async def _blocks_read(conn: asyncpg.Connection, database: str) -> int:
    """Blocks the server read into its buffers for ``database`` (from the OS's cache or the
    disk): what did not fit in ``shared_buffers``."""
    query = "SELECT blks_read FROM pg_stat_database WHERE datname = $1"
    return int(await conn.fetchval(query, database) or 0)


async def _server(
    admin_url: str, database: str, with_checkpoints: bool
) -> tuple[list[int], int, int]:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        pids = await _backend_pids(conn, database)
        if not with_checkpoints:
            return pids, 0, 0
        return pids, await _checkpoints(conn), await _blocks_read(conn, database)
    finally:
        await conn.close()


def postgres_backends(admin_url: str, database: str) -> list[int]:
    """Server processes serving ``database`` now (the router's pooled connections)."""
    return asyncio.run(_server(admin_url, database, with_checkpoints=False))[0]


def backends_and_checkpoints(admin_url: str, database: str) -> tuple[list[int], int, int]:
    """``postgres_backends``, the checkpoints the server has begun since its statistics were
    reset, and the blocks it has read for ``database``: one connection for all three."""
    return asyncio.run(_server(admin_url, database, with_checkpoints=True))


# --------------------------------------------------------------------------- the whole machine


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """Cumulative CPU seconds of the whole machine, and of this process and its reaped children.

    Over a run, busy minus what the benchmark's own processes used is what the rest of the
    machine took (other users' work), and steal is what the hypervisor took: both are noise.
    """

    busy_s: float
    steal_s: float
    harness_s: float  # this process and the children it waited for (wrk, the open loop)
    at: float
    io_stalled_s: float | None = None  # every runnable task waiting on I/O (None: no PSI)

    @classmethod
    def now(cls) -> MachineCpu:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        harness = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        busy = (user + nice + system + irq + softirq) / CLOCK_TICKS
        return cls(busy, steal / CLOCK_TICKS, harness, time.monotonic(), io_stalled_seconds())


def io_stalled_seconds() -> float | None:
    """The kernel's pressure stall information for I/O: the time during which every task that
    could run was waiting on I/O (the ``full`` line of ``/proc/pressure/io``, cumulative), or
    None where the kernel does not report it."""
    try:
        return full_stall_seconds(Path("/proc/pressure/io").read_text())
    except OSError:
        return None


def full_stall_seconds(text: str) -> float | None:
    """The ``full`` line's cumulative total (microseconds) of a ``/proc/pressure`` file."""
    for line in text.splitlines():
        if line.startswith("full "):
            total = dict(item.split("=", 1) for item in line.split()[1:])["total"]
            return int(total) / 1e6
    return None


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class TableStats:
    """One table as Postgres sees it; a partitioned table is the sum of its partitions.

    The counters are cumulative since the table was created (the soak's database is new).
    """

    heap_bytes: int  # pg_relation_size
    index_bytes: int  # pg_indexes_size
    total_bytes: int  # pg_total_relation_size: heap, indexes, TOAST, free space and visibility maps
    live_rows: int  # n_live_tup: an estimate
    dead_rows: int  # n_dead_tup
    updates: int  # n_tup_upd
    hot_updates: int  # n_tup_hot_upd
    autovacuums: int  # autovacuum_count
    autoanalyzes: int  # autoanalyze_count


# By name only: the soak must not depend on how the store lays the table out.
_TABLE_STATS = """
SELECT coalesce(sum(pg_relation_size(t.relid)), 0)::bigint,
       coalesce(sum(pg_indexes_size(t.relid)), 0)::bigint,
       coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint,
       coalesce(sum(s.n_live_tup), 0)::bigint,
       coalesce(sum(s.n_dead_tup), 0)::bigint,
       coalesce(sum(s.n_tup_upd), 0)::bigint,
       coalesce(sum(s.n_tup_hot_upd), 0)::bigint,
       coalesce(sum(s.autovacuum_count), 0)::bigint,
       coalesce(sum(s.autoanalyze_count), 0)::bigint
FROM (
    SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf
    UNION  -- a plain table is no partition tree: itself
    SELECT $1::regclass WHERE NOT EXISTS (SELECT FROM pg_partition_tree($1::regclass))
) AS t
LEFT JOIN pg_stat_user_tables AS s ON s.relid = t.relid
"""


async def _table_stats(url: str, tables: Iterable[str]) -> dict[str, TableStats]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        found: dict[str, TableStats] = {}
        for table in tables:
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                continue
            row = await conn.fetchrow(_TABLE_STATS, table)
            assert row is not None  # aggregates: always one row
            found[table] = TableStats(*(int(value) for value in row))
        return found
    finally:
        await conn.close()


def table_stats(url: str, tables: Iterable[str]) -> dict[str, TableStats]:
    """Sizes and statistics of each of ``tables`` that exists in the database of ``url``."""
    return asyncio.run(_table_stats(url, tables))


async def _checkpointer_pid(url: str) -> int | None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        pid = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
        )
        return None if pid is None else int(pid)
    finally:
        await conn.close()


def postmaster_pid(url: str) -> int | None:
    """The Postgres server's main process when it runs on this machine (the parent of its
    checkpointer), else None. Its process tree, with the CPU of the children it reaped, is the
    whole server's CPU: backends, autovacuum workers, the WAL writer, the checkpointer."""
    pid = asyncio.run(_checkpointer_pid(url))
    fields = _stat_fields(pid) if pid is not None else None
    if fields is None:
        return None
    parent = int(fields[1])
    return parent if _stat_fields(parent) is not None else None
