"""``python -m bench.log_size``: the grown log is a log the store reads, and the comparison runs
both routers on their logs in alternating windows and drops both databases.

No timing is asserted: which log is faster is what the tool measures, not what a test may hold.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.log_size import compare, fill
from router_service.config.settings import Settings
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.runtime.services import build_store
from tests.support.db import PG_ADMIN, migrated_database, query


async def _read_back(url: str, log_id: str) -> tuple[str, list[object]] | None:
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    store = build_store(settings, Telemetry(Metrics()))
    try:
        record = await store.get(log_id)
        if record is None:
            return None
        return record.status.value, [result["agent"] for result in record.results or []]
    finally:
        await store.close()


@pytest.mark.postgres
def test_the_fill_leaves_finished_signals_the_store_reads_and_only_dead_leases(
    tmp_path: Path,
) -> None:
    with migrated_database("postgres", tmp_path) as url:
        asyncio.run(fill(url, 1_200))
        keys = query(url, "SELECT count(*) AS n FROM idempotency_keys")
        logged = query(url, "SELECT status, count(*) AS n FROM signals GROUP BY status")
        leases = query(url, "SELECT count(*) AS n FROM signal_leases")
        [first] = query(url, "SELECT log_id FROM signals ORDER BY created_at LIMIT 1")
        read = asyncio.run(_read_back(url, first["log_id"]))
    assert keys == [{"n": 1_200}]
    assert logged == [{"status": "delivered", "n": 1_200}]
    assert leases == [{"n": 0}]  # taken and released, as the router leaves them
    assert read == ("delivered", ["bench"])


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_compare_alternates_a_grown_and_an_empty_log_and_drops_both(tmp_path: Path) -> None:
    windows = compare(PG_ADMIN, rows=2_000, rounds=2, seconds=1, connections=2, workdir=tmp_path)
    assert [w.log for w in windows] == ["grown", "empty", "empty", "grown"]
    assert all(w.rows >= 2_000 for w in windows if w.log == "grown")
    assert all(w.rows == 0 for w in windows if w.log == "empty")  # emptied before each window
    assert all(w.throughput_rps > 0 and w.router_cpu_us > 0 and w.reads >= 0 for w in windows)
    # New pages of the log count as reads, so the log's heap shows among the relations read.
    # Not in every window: Postgres 15 holds an idle backend's counters for up to 10 s before it
    # flushes them, and a 1-s window's may land in the next one.
    assert sum(w.reads_by_relation.get("signals", 0) for w in windows) > 0
    left = query(PG_ADMIN, "SELECT datname FROM pg_database WHERE datname LIKE 'router_logsize_%'")
    assert left == []
