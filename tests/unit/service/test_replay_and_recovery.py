"""The replayer and the sweeper on their own, over the in-memory store and fake agents: dead
letters made by the intake are replayed (succeeded, failed, exhausted, deferred), and signals
whose owner died are taken over."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import pytest

from router_service.domain.breaker import GuardPolicy
from router_service.domain.errors import (
    PermanentAgentError,
    RetryableAgentError,
    StorageError,
    StorageUnavailable,
)
from router_service.domain.outcome import DeadLetter, Outcome, Status
from router_service.domain.retry import RetryPolicy
from router_service.service.intake import Intake
from router_service.service.recovery import Sweeper, run_every
from router_service.service.replay import Replayer, ReplaySummary
from tests.support.fake_agents import Hold, Reply
from tests.support.wiring import Wired, routing, signal, trace, wire

WITHOUT_B = """\
agents:
  - {name: a, url: 'http://a.test/agent'}
routes:
  fanout: {agents: [a], mode: aggregate}
  default: {agents: [a]}
"""


def parked(w: Wired, route: str, *failing: str, log_id: str = "sig-1") -> None:
    """Route one signal whose ``failing`` agents refuse it, leaving dead letters."""
    for agent in failing:
        w.agents.script(agent, PermanentAgentError(f"{agent} said no"))
    asyncio.run(Intake(w.ctx).route(signal(route, log_id=log_id), None, trace()))


def replay(w: Wired, max_replays: int = 3, **options: object) -> ReplaySummary:
    replayer = Replayer(w.ctx, max_replays=max_replays)
    return asyncio.run(replayer.replay(**options))


# ---------------------------------------------------------------------------------- replay


def test_replaying_a_parked_signal_delivers_it_under_its_original_log_id() -> None:
    w = wire()
    parked(w, "race", "a", "b")
    summary = replay(w)
    assert (summary.replayed, summary.succeeded, summary.failed) == (1, 1, 0)
    letter = w.store.letter("sig-1", None)
    assert (letter.status, letter.replay_count) == ("replayed", 1)
    assert w.store.signals["sig-1"].status is Status.DELIVERED
    assert {c.log_id for c in w.agents.calls} == {"sig-1"}
    assert w.events.named("replayed") == [{"outcome": "succeeded"}]
    assert w.events.named("dlq_backlog")[-1] == {"size": 0}


def test_two_replayers_never_send_an_entry_twice_when_an_agent_is_slow() -> None:
    """Each entry takes the whole deadline: claimed by the hundred, the last ones' lease ran out
    before their turn came, and a second replayer took and sent them too."""
    w = wire()
    for n in range(1, 7):
        parked(w, "solo", "a", log_id=f"sig-{n}")
    holds = [Hold() for _ in range(5)]
    w.agents.script("a", *holds)
    other = replace(w.ctx, owner="router-2")

    async def scenario() -> None:
        first = asyncio.create_task(Replayer(w.ctx, max_replays=3).replay())
        for n, hold in enumerate(holds, start=1):
            await w.agents.called("a", times=6 + n)  # the six first calls, then this replay
            w.store.advance(w.ctx.deadline_s)
            if n == len(holds):
                await Replayer(other, max_replays=3).replay()
            hold.release()
        await first

    asyncio.run(scenario())
    sent = Counter(call.log_id for call in w.agents.calls_to("a"))
    assert sent == {f"sig-{n}": 2 for n in range(1, 7)}  # the first call, then one replay


def test_a_replay_whose_backlog_count_fails_still_reports_what_it_did() -> None:
    w = wire()
    parked(w, "race", "a", "b")

    async def count_fails() -> int:
        raise StorageUnavailable("every database connection is busy")

    w.store.dlq_backlog = count_fails  # type: ignore[method-assign]
    summary = replay(w)
    assert (summary.replayed, summary.succeeded) == (1, 1)
    assert w.store.letter("sig-1", None).status == "replayed"
    assert w.events.named("dlq_backlog") == []  # the gauge stays until the next count


def test_replaying_one_agent_of_an_aggregate_merges_its_answer_into_the_signal() -> None:
    w = wire()
    parked(w, "fanout", "b")
    w.agents.script("b", Reply({"b": "now"}))
    summary = replay(w)
    assert summary.succeeded == 1
    assert [c.agent for c in w.agents.calls[-1:]] == ["b"]  # only the agent that failed
    row = w.store.signals["sig-1"]
    assert (row.status, row.response) == (
        Status.DELIVERED,
        {"a": {"agent": "a"}, "b": {"b": "now"}},
    )


def test_a_failed_replay_stays_pending_and_counts_the_try() -> None:
    w = wire()
    parked(w, "solo", "a")
    w.agents.script("a", PermanentAgentError("still no"))
    summary = replay(w)
    assert (summary.failed, summary.exhausted) == (1, 0)
    letter = w.store.letter("sig-1", None)
    assert (letter.status, letter.replay_count, letter.error) == ("pending", 1, "a: still no")
    assert w.store.signals["sig-1"].status is Status.DEAD_LETTERED


def test_the_last_allowed_replay_failing_exhausts_the_entry() -> None:
    w = wire()
    parked(w, "solo", "a")
    w.agents.script("a", PermanentAgentError("no"), PermanentAgentError("never"))
    first, second = replay(w, max_replays=2), replay(w, max_replays=2)
    assert (first.failed, first.exhausted) == (1, 0)
    assert (second.failed, second.exhausted) == (1, 1)
    assert w.store.letter("sig-1", None).status == "exhausted"
    assert replay(w, max_replays=2).replayed == 0  # nothing pending is left
    assert w.events.named("replayed") == [{"outcome": "pending"}, {"outcome": "exhausted"}]


def test_a_replay_with_the_agents_circuit_open_is_deferred_and_spends_nothing() -> None:
    trips = GuardPolicy(failure_threshold=1, cooldown_s=60.0, min_retries=1_000_000)
    w = wire(guard=trips)
    w.agents.script("a", RetryableAgentError("HTTP 503"))
    asyncio.run(Intake(w.ctx).route(signal("solo"), None, trace()))  # opens a's circuit
    summary = replay(w)
    assert (summary.replayed, summary.deferred, summary.failed) == (1, 1, 0)
    letter = w.store.letter("sig-1", None)
    assert (letter.status, letter.replay_count) == ("pending", 0)
    assert len(w.agents.calls) == 1  # the replay called nobody
    assert w.events.named("replayed") == [{"outcome": "deferred"}]


def test_the_redelivery_workers_replays_are_recorded_in_the_delivery_history() -> None:
    """Its replays (due, paced) as much as a job's: each outcome, with no job, under the trace
    they went out with (the signal's own, continued)."""
    w = wire()
    parked(w, "solo", "a")
    original = w.store.signals["sig-1"].trace_id
    w.agents.script("a", PermanentAgentError("still no"))
    failed = replay(w, max_replays=2, due_only=True, pace_s=0.001)
    w.store.advance(3600)
    w.agents.script("a", PermanentAgentError("no again"))
    exhausted = replay(w, max_replays=2, due_only=True, pace_s=0.001)
    assert (failed.failed, exhausted.exhausted) == (1, 1)
    history = asyncio.run(w.store.replay_history("sig-1"))
    assert [(a.outcome, a.job_id, a.error) for a in history] == [
        ("pending", None, "a: still no"),
        ("exhausted", None, "a: no again"),
    ]
    assert {a.trace_id for a in history} == {c.trace_id for c in w.agents.calls} == {original}
    events = w.events.named("replay_attempt")
    assert [(e["job_id"], e["outcome"], e["trace"].trace_id) for e in events] == [
        (None, "pending", original),
        (None, "exhausted", original),
    ]


def test_an_entry_for_an_agent_no_longer_configured_fails_without_a_call() -> None:
    w = wire()
    parked(w, "fanout", "b")
    w.ctx = replace(w.ctx, routing=routing(WITHOUT_B))  # the routing file changed since
    calls = len(w.agents.calls)
    summary = replay(w)
    assert summary.failed == 1
    assert w.store.letter("sig-1", "b").error == "agent 'b' is no longer configured"
    assert len(w.agents.calls) == calls


def test_replay_takes_exactly_the_ids_asked_for() -> None:
    w = wire()
    for n in range(3):
        parked(w, "solo", "a", log_id=f"sig-{n}")
    middle = w.store.letter("sig-1", None).id
    summary = replay(w, ids=[middle])
    assert summary.succeeded == 1
    assert [w.store.letter(f"sig-{n}", None).status for n in range(3)] == [
        "pending",
        "replayed",
        "pending",
    ]


def test_the_redelivery_backoff_makes_a_failed_entry_not_due_at_once() -> None:
    w = wire()
    parked(w, "solo", "a")
    w.agents.script("a", PermanentAgentError("no"))
    backoff = RetryPolicy(max_attempts=5, base_s=30.0, cap_s=60.0)

    async def scenario() -> tuple[ReplaySummary, ReplaySummary, ReplaySummary]:
        replayer = Replayer(w.ctx, max_replays=5, backoff=backoff)
        failed = await replayer.replay(due_only=True)
        too_soon = await replayer.replay(due_only=True)
        w.store.advance(31)
        return failed, too_soon, await replayer.replay(due_only=True)

    failed, too_soon, due = asyncio.run(scenario())
    assert (failed.failed, too_soon.replayed, due.succeeded) == (1, 0, 1)


# ---------------------------------------------------------------------------------- recovery


def claim_and_die(w: Wired, route: str, owner: str, lease_s: float, log_id: str = "sig-1") -> None:
    """A signal claimed by a process that then died before recording anything."""
    intake = Intake(w.ctx)
    plan = intake.plan(signal(route, log_id=log_id), None)
    claim = asyncio.run(w.store.claim(signal(route, log_id=log_id), plan, "7" * 32, owner, lease_s))
    assert claim.won


def test_the_sweeper_takes_over_a_signal_whose_lease_ran_out() -> None:
    w = wire(owner="survivor")
    claim_and_die(w, "race", owner="crashed", lease_s=5.0)
    w.store.advance(6)
    assert asyncio.run(Sweeper(w.ctx).sweep_once()) == 1
    row = w.store.signals["sig-1"]
    assert row.status is Status.DELIVERED
    assert {c.log_id for c in w.agents.calls} == {"sig-1"}
    assert {c.trace_id for c in w.agents.calls} == {"7" * 32}  # the original trace goes on
    assert w.store.leases == {}
    assert w.events.named("signal_recovered") == [
        {"log_id": "sig-1", "status": "delivered", "trace_id": "7" * 32}
    ]


def test_the_sweeper_leaves_a_signal_whose_lease_is_still_running() -> None:
    w = wire(owner="survivor")
    claim_and_die(w, "solo", owner="busy", lease_s=5.0)
    w.store.advance(4)
    assert asyncio.run(Sweeper(w.ctx).sweep_once()) == 0
    assert w.agents.calls == []
    assert w.store.signals["sig-1"].status is Status.IN_PROGRESS


def test_leases_released_on_shutdown_are_taken_over_at_once() -> None:
    w = wire(owner="survivor")
    claim_and_die(w, "solo", owner="stopping", lease_s=60.0)
    assert asyncio.run(w.store.release_leases("stopping")) == 1
    assert asyncio.run(Sweeper(w.ctx).sweep_once()) == 1
    assert w.store.signals["sig-1"].status is Status.DELIVERED


def test_a_recovered_signal_whose_agents_fail_is_dead_lettered() -> None:
    w = wire(owner="survivor")
    claim_and_die(w, "solo", owner="crashed", lease_s=1.0)
    w.store.advance(2)
    w.agents.script("a", PermanentAgentError("gone"))
    asyncio.run(Sweeper(w.ctx).sweep_once())
    assert w.store.signals["sig-1"].status is Status.DEAD_LETTERED
    assert w.store.letter("sig-1", None).error == "a: gone"
    assert w.events.named("dead_lettered") == [{"count": 1}]


def test_the_first_outcome_wins_when_the_original_owner_finishes_after_a_takeover() -> None:
    w = wire(owner="survivor")
    claim_and_die(w, "solo", owner="slow", lease_s=1.0)
    w.store.advance(2)
    asyncio.run(Sweeper(w.ctx).sweep_once())
    # The slow original owner now records its own (failed) outcome: too late to count.
    plan = Intake(w.ctx).plan(signal("solo"), None)
    late = Outcome(Status.DEAD_LETTERED, None, (), (DeadLetter(None, "late", 1),))
    created_at = w.store.signals["sig-1"].created_at
    assert asyncio.run(w.store.record("sig-1", created_at, plan, late, 1.0)) is None
    assert w.store.letters == {}
    assert w.store.signals["sig-1"].status is Status.DELIVERED


@pytest.mark.parametrize(
    ("error", "reported"),
    [
        (StorageError("database away"), "database away"),
        # A sweep that hit a bug (an outcome nothing could store) ended the task: crash
        # recovery stopped for the whole process, and nothing was logged.
        (
            UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
            "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0:"
            " surrogates not allowed",
        ),
    ],
)
def test_a_background_step_that_fails_is_reported_and_runs_again(
    error: Exception, reported: str
) -> None:
    w = wire()
    ticks: list[int] = []

    async def step() -> int:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise error
        if len(ticks) == 3:
            raise asyncio.CancelledError  # stop the loop: it never ends by itself
        return 1

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_every(0.0, "sweep", step, w.events))
    assert ticks == [0, 1, 2]
    assert w.events.named("background_failed") == [{"step": "sweep", "error": reported}]
