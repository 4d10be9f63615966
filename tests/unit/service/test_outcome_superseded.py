"""A signal's owner that finds its signal finished by another (its lease ran out while it was
frozen, and a replica took the signal over) answers the log's outcome, not its own: the client
was told dead_lettered while the log said delivered."""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from router_service.domain.errors import StorageUnavailable
from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import Plan
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.service.intake import Intake
from tests.support.fake_clock import FakeClock
from tests.support.fake_store import FakeStore
from tests.support.store import PARKED
from tests.support.wiring import signal, trace, wire


class TakenOverMeanwhile(FakeStore):
    """Another owner writes ``theirs`` just before this owner's outcome arrives."""

    def __init__(self, theirs: Outcome) -> None:
        super().__init__()
        self.theirs = theirs

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int | None:
        assert await super().record(log_id, created_at, plan, self.theirs, 9.0) == 1
        return await super().record(log_id, created_at, plan, outcome, latency_ms)


class AnswerLost(FakeStore):
    """The first write goes through and its answer is lost on the way back."""

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int | None:
        written = await super().record(log_id, created_at, plan, outcome, latency_ms)
        if self.calls.count("record") == 1:
            raise StorageUnavailable("connection lost after the commit")
        return written


def test_the_owner_whose_signal_was_finished_by_another_answers_the_logs_outcome() -> None:
    store = TakenOverMeanwhile(PARKED)
    w = wire(store=store)
    answer = asyncio.run(Intake(w.ctx).route(signal("solo"), None, trace()))
    assert len(w.agents.calls) == 1  # this owner's own dispatch went through
    assert answer.status == "dead_lettered"  # but the log says the other's
    assert answer.results == store.signals["sig-1"].results
    assert answer.duplicate is False
    assert [(e["own"], e["stored"]) for e in w.events.named("outcome_superseded")] == [
        ("delivered", "dead_lettered")
    ]
    finished = w.events.named("signal_finished")
    assert [e["status"] for e in finished] == [Status.DEAD_LETTERED]


def test_a_written_outcome_whose_answer_was_lost_is_answered_as_stored() -> None:
    store = AnswerLost()
    w = wire(store=store)
    clock = FakeClock()
    intake = Intake(w.ctx, sleep=clock.sleep, clock=clock, rand=lambda: 0.5)
    answer = asyncio.run(intake.route(signal("solo"), None, trace()))
    assert store.calls.count("record") == 2
    assert answer.status == "delivered"
    assert store.signals["sig-1"].status is Status.DELIVERED
    assert w.events.named("outcome_superseded") == []


def test_the_telemetry_counts_a_superseded_outcome_and_warns_with_both() -> None:
    metrics = Metrics()
    with structlog.testing.capture_logs() as logs:
        Telemetry(metrics).outcome_superseded(log_id="sig-1", own="delivered", stored="partial")
    [line] = [entry for entry in logs if entry["event"] == "signal.outcome_superseded"]
    assert line["log_level"] == "warning"
    assert (line["log_id"], line["own"], line["stored"]) == ("sig-1", "delivered", "partial")
    assert metrics.registry.get_sample_value("outcomes_superseded_total") == 1.0
