"""The dead-letter backlog gauge: counted at start, when told the queue grew, every refresh,
at most once per interval, and left as it was when a count fails."""

from __future__ import annotations

import asyncio

from router_service.domain.errors import StorageUnavailable
from router_service.service.backlog import BacklogGauge
from tests.support.fake_events import RecordingEvents
from tests.support.fake_store import FakeStore


async def turns(n: int = 10) -> None:
    """Let the loop run ``n`` turns (the fake store yields once per call)."""
    for _ in range(n):
        await asyncio.sleep(0)


def counts(store: FakeStore) -> int:
    return store.calls.count("dlq_backlog")


def test_the_gauge_counts_at_start_and_when_told_and_not_otherwise() -> None:
    async def scenario() -> None:
        store, events = FakeStore(), RecordingEvents()
        gauge = BacklogGauge(store, events, refresh_s=3600, min_interval_s=0.0)
        task = asyncio.create_task(gauge.run())
        await turns()
        assert counts(store) == 1
        await turns()
        assert counts(store) == 1  # nothing changed, the refresh is an hour away
        gauge.changed()
        gauge.changed()  # two changes before the count: one count
        await turns()
        assert counts(store) == 2
        assert events.named("dlq_backlog") == [{"size": 0}, {"size": 0}]
        task.cancel()

    asyncio.run(scenario())


def test_counts_are_at_most_one_per_interval() -> None:
    async def scenario() -> None:
        store = FakeStore()
        gauge = BacklogGauge(store, RecordingEvents(), refresh_s=3600, min_interval_s=3600)
        task = asyncio.create_task(gauge.run())
        await turns()
        gauge.changed()
        await turns()
        assert counts(store) == 1  # told, but the last count was less than an interval ago
        task.cancel()

    asyncio.run(scenario())


def test_a_failed_count_leaves_the_gauge_and_the_next_one_comes() -> None:
    async def scenario() -> None:
        store, events = FakeStore(), RecordingEvents()
        store.fail_next = StorageUnavailable("every database connection is busy")
        gauge = BacklogGauge(store, events, refresh_s=3600, min_interval_s=0.0)
        task = asyncio.create_task(gauge.run())
        await turns()
        assert counts(store) == 1
        assert events.named("dlq_backlog") == []
        assert not task.done()
        gauge.changed()
        await turns()
        assert events.named("dlq_backlog") == [{"size": 0}]
        task.cancel()

    asyncio.run(scenario())
