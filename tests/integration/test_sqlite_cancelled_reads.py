"""A read of the SQLite store cancelled during its checkout gives its connection back
(``adapters/db/sqlite_checkout.py``). Cancelled one loop turn in, a read of a warm pool was
inside the checkout's round trip to aiosqlite's thread (setting autocommit), and its connection
stayed checked out until the garbage collector found it. The pool here has one connection and
the collector is off, so a connection lost that way fails the next read with 503 ``overloaded``
once the pool's wait runs out."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from router_service.config.settings import Settings
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.runtime.services import build_store
from tests.support.db import migrated_database
from tests.support.store import DELIVERED, PLAN, record_outcome, signal

# Loop turns before the cancel: the first lands inside the checkout's round trip.
TURNS = (0, 1, 2, 3, 5, 8)
ROUNDS = 4


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with migrated_database("sqlite", tmp_path) as fresh:
        yield fresh


@pytest.fixture
def collector_off() -> Iterator[None]:
    """A connection left checked out stays lost (the collector would give it back, late)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_read_cancelled_in_its_checkout_gives_the_connection_back(
    url: str, collector_off: None
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, db_pool_size=1, db_max_overflow=0,
        db_connect_timeout_s=1.0,
    )  # fmt: skip

    async def scenario() -> list[str]:
        store = build_store(settings, Telemetry(Metrics()))
        try:
            await store.claim(signal("kept"), PLAN, "trace", "owner", lease_s=60)
            await record_outcome(store, "kept", PLAN, DELIVERED, 1.0)  # the pool's connection
            read_after: list[str] = []
            for _ in range(ROUNDS):
                for turns in TURNS:
                    reading = asyncio.create_task(store.get("kept"))
                    for _ in range(turns):
                        await asyncio.sleep(0)
                    reading.cancel()
                    await asyncio.gather(reading, return_exceptions=True)
                    found = await store.get("kept")  # Overloaded if the connection was lost
                    read_after.append(found.log_id if found is not None else "missing")
            return read_after
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["kept"] * (ROUNDS * len(TURNS))
