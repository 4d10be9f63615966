"""The dispatcher on its own: modes, retries and their classification, deadlines, the breaker,
hedging. Fake agents and a fake clock: nothing waits for real except the hedge's own timer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from router_service.domain.breaker import GuardPolicy
from router_service.domain.errors import (
    AgentNeedsInput,
    PermanentAgentError,
    RetryableAgentError,
)
from router_service.domain.outcome import AgentResult, Status, fold
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import HedgePolicy, Mode, Plan
from router_service.service.ports import Envelope
from tests.support.fake_agents import FakeAgents, Hold, Reply, Takes
from tests.support.fake_clock import FakeClock
from tests.support.fake_events import RecordingEvents
from tests.support.wiring import dispatcher, routing, signal, trace

NO_DEADLINE = float("inf")
RETRY_3 = RetryPolicy(max_attempts=3, base_s=0.1, cap_s=1.0)


def plan_for(route: str, mode: Mode | None = None) -> Plan:
    return routing().current().config.table.plan(route, f"to-{route}", mode)


def run(
    route: str,
    agents: FakeAgents,
    *,
    clock: FakeClock | None = None,
    deadline_s: float = 2.0,
    events: RecordingEvents | None = None,
    **options: Any,
) -> list[AgentResult]:
    clock = clock or FakeClock()
    events = events or RecordingEvents()
    plan = plan_for(route)
    envelope = Envelope.of(signal(route), plan.kind)

    async def scenario() -> list[AgentResult]:
        calls = dispatcher(agents, events, clock=clock, **options)
        return await calls.dispatch(plan, envelope, trace(), clock() + deadline_s)

    return asyncio.run(scenario())


def summary(results: list[AgentResult]) -> list[tuple[str, bool, int]]:
    return [(r.agent, r.ok, r.attempts) for r in results]


# ---------------------------------------------------------------------------------- modes


def test_first_success_returns_the_winner_and_cancels_the_agent_still_running() -> None:
    agents = FakeAgents()
    agents.script("a", Hold())
    agents.script("b", Reply({"from": "b"}))
    results = run("race", agents)
    by_agent = {r.agent: r for r in results}
    assert (by_agent["b"].ok, by_agent["b"].response) == (True, {"from": "b"})
    assert (by_agent["a"].ok, by_agent["a"].error) == (False, "cancelled")
    assert agents.cancelled == ["a"]
    assert fold(Mode.FIRST_SUCCESS, results).status is Status.DELIVERED


def test_first_success_with_every_agent_failing_parks_the_whole_signal() -> None:
    agents = FakeAgents()
    agents.script("a", PermanentAgentError("HTTP 400", status_code=400))
    agents.script("b", PermanentAgentError("HTTP 422", status_code=422))
    results = run("race", agents)
    assert sorted(summary(results)) == [("a", False, 1), ("b", False, 1)]
    outcome = fold(Mode.FIRST_SUCCESS, results)
    assert outcome.status is Status.DEAD_LETTERED
    [letter] = outcome.dead_letters
    assert letter.agent is None
    assert letter.error == "a: HTTP 400; b: HTTP 422"


def test_fallback_tries_agents_in_order_and_stops_at_the_first_success() -> None:
    agents = FakeAgents()
    agents.script("a", PermanentAgentError("HTTP 404", status_code=404))
    results = run("chain", agents)
    assert summary(results) == [("a", False, 1), ("b", True, 1)]
    assert [c.agent for c in agents.calls] == ["a", "b"]  # c never called


def test_aggregate_calls_every_agent_and_folds_a_failure_into_partial() -> None:
    agents = FakeAgents()
    agents.script("b", PermanentAgentError("HTTP 500 once too often", status_code=500))
    results = run("fanout", agents)
    assert summary(results) == [("a", True, 1), ("b", False, 1)]
    outcome = fold(Mode.AGGREGATE, results)
    assert outcome.status is Status.PARTIAL
    assert outcome.response == {"a": {"agent": "a"}, "b": None}
    assert [(d.agent, d.error) for d in outcome.dead_letters] == [("b", "HTTP 500 once too often")]


def test_each_agent_is_called_through_the_client_of_its_protocol() -> None:
    http, a2a = FakeAgents(), FakeAgents()
    plan = plan_for("mixed")
    calls = dispatcher(http, RecordingEvents(), a2a=a2a)
    envelope = Envelope.of(signal("mixed"), plan.kind)
    results = asyncio.run(calls.dispatch(plan, envelope, trace(), NO_DEADLINE))
    assert summary(results) == [("a", True, 1), ("x", True, 1)]
    assert [c.agent for c in http.calls] == ["a"]
    assert [(c.agent, c.protocol) for c in a2a.calls] == [("x", "a2a")]


# ---------------------------------------------------------------------------------- retries


def test_a_retryable_error_is_retried_with_jittered_backoff_until_attempts_run_out() -> None:
    clock, events, agents = FakeClock(), RecordingEvents(), FakeAgents()
    agents.script("a", *(RetryableAgentError("HTTP 503", status_code=503) for _ in range(3)))
    [result] = run("solo", agents, clock=clock, events=events, policy=RETRY_3)
    assert (result.ok, result.attempts, result.status_code) == (False, 3, 503)
    assert result.error == "HTTP 503"
    # Full jitter with rand() = 0.5: half of 0.1 s, then half of 0.2 s.
    assert clock.slept == [0.05, 0.1]
    assert [e["delay_s"] for e in events.named("retry")] == [0.05, 0.1]
    assert [e["outcome"] for e in events.named("agent_attempt")] == ["retryable"] * 3


def test_a_retry_that_succeeds_ends_the_agent_delivered() -> None:
    agents = FakeAgents()
    agents.script("a", RetryableAgentError("connection reset"), Reply({"late": True}))
    [result] = run("solo", agents, policy=RETRY_3)
    assert (result.ok, result.attempts, result.response) == (True, 2, {"late": True})


def test_a_permanent_error_is_not_retried() -> None:
    agents, clock = FakeAgents(), FakeClock()
    agents.script("a", PermanentAgentError("HTTP 400", status_code=400, response={"why": "no"}))
    [result] = run("solo", agents, clock=clock, policy=RETRY_3)
    assert (result.ok, result.attempts, result.status_code) == (False, 1, 400)
    assert result.response == {"why": "no"}
    assert clock.slept == []


def test_an_agent_asking_for_input_is_neither_retried_nor_a_success() -> None:
    agents = FakeAgents()
    agents.script("a", AgentNeedsInput("input-required", task_id="t-1", context_id="c-1"))
    [result] = run("solo", agents, policy=RETRY_3)
    assert (result.ok, result.attempts, result.needs_input) == (False, 1, True)
    assert (result.task_id, result.context_id) == ("t-1", "c-1")
    assert fold(Mode.FIRST_SUCCESS, [result]).status is Status.DEAD_LETTERED


def test_retry_after_from_the_agent_replaces_the_backoff() -> None:
    clock, agents = FakeClock(), FakeAgents()
    agents.script("a", RetryableAgentError("HTTP 429", status_code=429, retry_after_s=0.7))
    [result] = run("solo", agents, clock=clock, policy=RETRY_3)
    assert (result.ok, result.attempts) == (True, 2)
    assert clock.slept == [0.7]


def test_the_retry_budget_running_dry_stops_retries() -> None:
    agents = FakeAgents()
    agents.script("a", RetryableAgentError("HTTP 502", status_code=502))
    dry = GuardPolicy(failure_threshold=1_000_000, retry_ratio=0.0, min_retries=0)
    [result] = run("solo", agents, policy=RETRY_3, guard=dry)
    assert (result.ok, result.attempts) == (False, 1)
    assert result.error == "HTTP 502 (retry budget exhausted)"


# ---------------------------------------------------------------------------------- deadlines


def test_retries_stop_when_the_next_wait_would_pass_the_deadline() -> None:
    clock, agents = FakeClock(), FakeAgents()
    agents.script("a", *(RetryableAgentError("HTTP 503") for _ in range(10)))
    policy = RetryPolicy(max_attempts=10, base_s=0.25, cap_s=0.25)
    # Waits of 0.125 s each: after three, 0.125 s are left, and the next wait would use them up.
    [result] = run("solo", agents, clock=clock, deadline_s=0.5, policy=policy)
    assert result.attempts == 4
    assert clock.slept == [0.125] * 3


def test_an_attempt_gets_at_most_the_time_left_before_the_deadline() -> None:
    clock = FakeClock()
    agents = FakeAgents(clock)
    agents.script("a", Takes(0.5, RetryableAgentError("slow")))
    run("solo", agents, clock=clock, deadline_s=0.8, policy=RETRY_3, agent_timeout_s=1.0)
    assert [round(c.timeout_s, 6) for c in agents.calls] == [0.8, 0.25]  # 0.8 - 0.5 - 0.05 wait


def test_an_agents_own_timeout_overrides_the_default_per_attempt_timeout() -> None:
    agents = FakeAgents()
    agents.script("a", PermanentAgentError("HTTP 404"))
    agents.script("b", PermanentAgentError("HTTP 404"))
    run("chain", agents, agent_timeout_s=1.0)
    assert [(c.agent, c.timeout_s) for c in agents.calls] == [("a", 1.0), ("b", 1.0), ("c", 0.1)]


def test_fallback_calls_no_further_agent_once_the_deadline_has_passed() -> None:
    clock = FakeClock()
    agents = FakeAgents(clock)
    agents.script("a", Takes(1.5, RetryableAgentError("timed out")))
    results = run("chain", agents, clock=clock, deadline_s=1.0)
    assert summary(results) == [("a", False, 1)]
    assert [c.agent for c in agents.calls] == ["a"]


# ---------------------------------------------------------------------------------- the breaker


def test_an_open_circuit_fails_the_agent_without_calling_it() -> None:
    agents, events = FakeAgents(), RecordingEvents()
    agents.script("a", RetryableAgentError("HTTP 503", status_code=503))
    trips = GuardPolicy(failure_threshold=1, cooldown_s=60.0, min_retries=1_000_000)
    plan = plan_for("solo")

    envelope = Envelope.of(signal("solo"), "solo")

    async def scenario() -> tuple[AgentResult, AgentResult]:
        calls = dispatcher(agents, events, guard=trips)
        first = await calls.call_one(plan.agents[0], envelope, trace(), NO_DEADLINE)
        second = await calls.call_one(plan.agents[0], envelope, trace(), NO_DEADLINE)
        return first, second

    first, second = asyncio.run(scenario())
    assert first.attempts == 1
    assert (second.ok, second.attempts) == (False, 0)
    assert second.error is not None
    assert second.error.startswith("circuit open: the agent keeps failing, not called (next probe")
    assert len(agents.calls) == 1
    assert events.named("circuit_state") == [{"agent": "a", "state": "open"}]
    assert events.named("circuit_rejected") == [{"agent": "a"}]


# ---------------------------------------------------------------------------------- hedging


def test_a_slow_first_agent_is_hedged_and_the_hedge_wins() -> None:
    agents, events = FakeAgents(), RecordingEvents()
    agents.script("a", Hold())
    results = run("hedged", agents, events=events)
    by_agent = {r.agent: r for r in results}
    assert (by_agent["b"].ok, by_agent["b"].hedge) == (True, True)
    assert (by_agent["a"].error, by_agent["a"].hedge) == ("cancelled", False)
    assert events.named("hedge") == [{"agent": "b", "outcome": "won"}]


def test_without_budget_no_hedge_is_made_and_the_first_agent_is_awaited() -> None:
    agents, events = FakeAgents(), RecordingEvents()
    slow = Hold(Reply({"from": "a"}))
    agents.script("a", slow)
    # A hedge route whose budget (5% of calls) cannot pay for a hedge on its first call.
    stingy = replace(plan_for("hedged"), hedge=HedgePolicy(after_s=0.01, max_extra=0.05))

    async def scenario() -> list[AgentResult]:
        calls = dispatcher(agents, events)
        running = asyncio.create_task(
            calls.dispatch(stingy, Envelope.of(signal("hedged"), "hedged"), trace(), NO_DEADLINE)
        )
        async with asyncio.timeout(2):
            while not events.named("hedge"):  # the budget refused the hedge
                await asyncio.sleep(0.001)
        slow.release()
        return await running

    results = asyncio.run(scenario())
    assert summary(results) == [("a", True, 1)]
    assert events.named("hedge") == [{"agent": "b", "outcome": "no_budget"}]
    assert [c.agent for c in agents.calls] == ["a"]
