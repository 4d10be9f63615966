"""``python -m bench.store_cost`` on a real SQLite file: every signal it counts is claimed and
finished in the log, and the figures are per signal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.store_cost import store_cost
from tests.support.db import migrated_database, query


def test_store_cost_claims_and_finishes_the_signals_it_counts(tmp_path: Path) -> None:
    with migrated_database("sqlite", tmp_path) as url:
        costs = asyncio.run(store_cost(url, signals=24, levels=[1, 8]))
        rows = query(url, "SELECT status, count(*) AS n FROM signals GROUP BY status")
    assert [(c.concurrency, c.signals) for c in costs] == [(1, 24), (8, 24)]
    assert all(c.per_s > 0 and c.cpu_us > 0 for c in costs)
    assert rows == [{"status": "delivered", "n": 2 * (20 + 24)}]  # warm-ups included
