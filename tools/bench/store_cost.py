"""``python -m bench.store_cost``: what the store alone costs a signal (its claim and its outcome),
with 1, 8 and 64 signals at once.

The store is built as the server builds it (``build_store``, the server's default settings) on a
fresh, migrated database: a SQLite file in a temporary directory by default, or the Postgres
database of ``--database-url``. On uvloop, C tasks each claim a new signal and record its outcome,
one after the other, until ``--signals`` are done. Printed per concurrency: signals per second,
and the process's CPU per signal (user and system, every thread of it: the SQLite writer's and
aiosqlite's included), after a warm-up. No HTTP and no agent: where the router's CPU per signal
differs between stores, this says how much of it is the store's. Pin it to one core as the
benchmark pins the router::

    taskset -c 1 .venv/bin/python -m bench.store_cost
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from router_service.adapters.db.migrate import upgrade
from router_service.config.settings import Settings
from router_service.domain.outcome import AgentResult, Outcome, Status
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.domain.signal import Signal
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.runtime.services import build_store
from router_service.service.ports import Store

PLAN = Plan("default", "", Mode.FIRST_SUCCESS, (AgentSpec("bench", "http://127.0.0.1:9/"),))
DELIVERED = Outcome(
    Status.DELIVERED,
    {"ok": True},
    (AgentResult("bench", True, 200, 1, 0.6, response={"ok": True}),),
    (),
)
WARMUP = 20


@dataclass(frozen=True, slots=True)
class StoreCost:
    concurrency: int
    signals: int
    per_s: float
    cpu_us: float  # user + system, per signal


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(store: Store, signals: int, concurrency: int, run: str) -> StoreCost:
    numbers = itertools.count()

    async def one() -> None:
        n = next(numbers)
        signal = Signal.create(
            sender_id="bench", payload={"run": run, "n": n}, timestamp=datetime.now(UTC)
        )
        claim = await store.claim(signal, PLAN, "b" * 32, "bench", 30.0)
        if claim.claimed_at is None:
            raise RuntimeError(f"signal {n} was not new")
        await store.record(signal.log_id, claim.claimed_at, PLAN, DELIVERED, 1.0)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    for _ in range(WARMUP):
        await one()
    each = max(1, signals // concurrency)
    started, cpu = time.perf_counter(), _cpu_s()
    await asyncio.gather(*(worker(each) for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, _cpu_s() - cpu
    done = each * concurrency
    return StoreCost(concurrency, done, done / wall, cpu / done * 1e6)


async def store_cost(database_url: str, signals: int, levels: list[int]) -> list[StoreCost]:
    """One measurement per concurrency level, on the migrated database of ``database_url``."""
    settings = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    store = build_store(settings, Telemetry(Metrics()))
    try:
        run = f"{time.time_ns()}"
        return [await _measure(store, signals, level, f"{run}-{level}") for level in levels]
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    parser.add_argument("--database-url", help="a Postgres database (default: a new SQLite file)")
    parser.add_argument("--signals", type=int, default=3000, help="signals per level")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated")
    args = parser.parse_args()
    levels = [int(n) for n in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'store.db'}"
        upgrade(Settings(_env_file=None, database_url=url).database_url)  # type: ignore[call-arg]
        costs = uvloop.run(store_cost(url, args.signals, levels))
    for cost in costs:
        print(
            f"{cost.concurrency:>3} at once: {cost.per_s:,.0f} signals/s, "
            f"{cost.cpu_us:,.0f} µs of CPU per signal ({cost.signals:,} signals)"
        )


if __name__ == "__main__":
    main()
