"""A dispatched signal's outcome that the database fails to take is written again within the
signal's lease, so that the sweeper does not send the signal a second time; a failure that no
retry can mend is not retried, and one that outlasts the lease's margin answers as before."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from router_service.domain.errors import Overloaded, StorageError, StorageUnavailable
from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import Plan
from router_service.service.intake import OUTCOME_WRITE_DEADLINES, Intake
from tests.support.fake_clock import FakeClock
from tests.support.fake_store import FakeStore
from tests.support.wiring import signal, trace, wire


class FailingRecords(FakeStore):
    """Fails the outcome's write with each of ``failures`` in turn, then writes it."""

    def __init__(self, failures: list[StorageError]) -> None:
        super().__init__()
        self.failures = failures
        self.record_calls = 0

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int:
        self.record_calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return await super().record(log_id, created_at, plan, outcome, latency_ms)


def _intake(store: FakeStore, clock: FakeClock, deadline_s: float = 2.0) -> tuple[Intake, Any]:
    w = wire(store=store, deadline_s=deadline_s)
    return Intake(w.ctx, sleep=clock.sleep, clock=clock, rand=lambda: 0.5), w


def test_an_outcome_the_database_failed_is_written_again_and_the_signal_sent_once() -> None:
    store = FailingRecords(
        [StorageUnavailable("database unavailable"), Overloaded("no connection free")]
    )
    clock = FakeClock()
    intake, w = _intake(store, clock)
    answer = asyncio.run(intake.route(signal("solo"), None, trace()))
    assert answer.status == "delivered"
    assert store.signals["sig-1"].status is Status.DELIVERED
    assert store.leases == {}  # finished: no sweeper will take it for unfinished
    assert len(w.agents.calls) == 1
    assert store.record_calls == 3
    retries = w.events.named("outcome_write_retry")
    assert [(r["log_id"], r["attempt"], r["error"]) for r in retries] == [
        ("sig-1", 1, "database unavailable"),
        ("sig-1", 2, "no connection free"),
    ]
    # Capped exponential backoff with full jitter (the jitter's draw is 0.5 here).
    assert clock.slept == [0.025, 0.05]
    assert [r["delay_s"] for r in retries] == clock.slept


def test_an_outage_longer_than_the_leases_margin_answers_503_and_leaves_the_lease() -> None:
    store = FailingRecords([StorageUnavailable("database unavailable")] * 10_000)
    clock = FakeClock()
    intake, w = _intake(store, clock, deadline_s=2.0)
    with pytest.raises(StorageUnavailable):
        asyncio.run(intake.route(signal("solo"), None, trace()))
    # Written again for at most 1.5 deadlines from the signal's arrival; the lease runs 2.
    assert 0 < sum(clock.slept) < 2.0 * OUTCOME_WRITE_DEADLINES
    assert len(clock.slept) > 5
    assert store.record_calls == len(clock.slept) + 1
    assert store.signals["sig-1"].status is Status.IN_PROGRESS
    assert "sig-1" in store.leases  # the sweeper finishes it once the lease runs out
    assert len(w.agents.calls) == 1


def test_a_failure_no_retry_mends_is_not_retried() -> None:
    store = FailingRecords([StorageError("value out of range")])
    clock = FakeClock()
    intake, w = _intake(store, clock)
    with pytest.raises(StorageError, match="out of range"):
        asyncio.run(intake.route(signal("solo"), None, trace()))
    assert store.record_calls == 1
    assert clock.slept == []
    assert w.events.named("outcome_write_retry") == []
