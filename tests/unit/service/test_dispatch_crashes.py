"""An unexpected error inside one agent's call (a bug of ours, an answer we failed to read) is
that agent's failed result: the other agents keep theirs, nothing is retried, the breaker counts
it, and no call of the signal outlives the dispatch."""

from __future__ import annotations

import asyncio

import pytest

from router_service.domain.breaker import GuardPolicy
from router_service.domain.outcome import AgentResult, Status, fold
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec, Mode
from router_service.domain.trace import TraceContext
from router_service.service.ports import AgentReply, Envelope
from tests.support.fake_agents import FakeAgents, Hold, Reply
from tests.support.fake_events import RecordingEvents
from tests.support.wiring import dispatcher, routing, signal, trace

RETRY_3 = RetryPolicy(max_attempts=3, base_s=0.1, cap_s=1.0)


def test_a_crash_in_one_agents_call_leaves_the_others_results_in_aggregate() -> None:
    agents, events = FakeAgents(), RecordingEvents()
    boom = OverflowError("signed integer is greater than maximum")
    agents.script("a", boom)
    slow = Hold(Reply({"from": "b"}))
    agents.script("b", slow)
    plan = routing().current().config.table.plan("fanout", "to-fanout", None)
    envelope = Envelope.of(signal("fanout"), plan.kind)

    async def scenario() -> list[AgentResult]:
        calls = dispatcher(agents, events, policy=RETRY_3)
        running = asyncio.create_task(calls.dispatch(plan, envelope, trace(), float("inf")))
        await agents.called("b")
        await agents.called("a")
        await asyncio.sleep(0)  # a's crash is reported before b answers
        assert not running.done()  # b is still awaited: aggregate waits for every agent
        slow.release()
        return await running

    a, b = asyncio.run(scenario())
    assert (a.agent, a.ok, a.attempts, a.error) == ("a", False, 1, "internal error during dispatch")
    assert (b.agent, b.ok, b.attempts, b.response) == ("b", True, 1, {"from": "b"})
    assert sorted(c.agent for c in agents.calls) == ["a", "b"]  # a crash is not retried
    outcome = fold(Mode.AGGREGATE, [a, b])
    assert outcome.status is Status.PARTIAL
    assert [letter.agent for letter in outcome.dead_letters] == ["a"]
    assert events.named("dispatch_crashed") == [{"log_id": "sig-1", "error": boom}]
    [attempt] = [e for e in events.named("agent_attempt") if e["agent"] == "a"]
    assert (attempt["outcome"], attempt["error"]) == ("permanent", "internal error during dispatch")


def test_a_crash_in_an_agents_call_is_not_retried_and_counts_against_its_breaker() -> None:
    agents, events = FakeAgents(), RecordingEvents()
    agents.script("a", RuntimeError("a bug"), RuntimeError("a bug"))
    trips = GuardPolicy(failure_threshold=1, cooldown_s=60.0, min_retries=1_000_000)
    plan = routing().current().config.table.plan("solo", "to-solo", None)
    envelope = Envelope.of(signal("solo"), plan.kind)

    async def scenario() -> tuple[AgentResult, AgentResult]:
        calls = dispatcher(agents, events, policy=RETRY_3, guard=trips)
        first = await calls.call_one(plan.agents[0], envelope, trace(), float("inf"))
        second = await calls.call_one(plan.agents[0], envelope, trace(), float("inf"))
        return first, second

    first, second = asyncio.run(scenario())
    assert (first.ok, first.attempts, first.error) == (False, 1, "internal error during dispatch")
    assert (second.ok, second.attempts) == (False, 0)  # the circuit opened: not called
    assert len(agents.calls) == 1
    assert events.named("circuit_state") == [{"agent": "a", "state": "open"}]


class _Abort(BaseException):
    """Something no call turns into a result (as KeyboardInterrupt or SystemExit)."""


class AbortingA(FakeAgents):
    """Agent ``a`` raises ``_Abort`` once ``b`` is in its call; the others play their script."""

    async def deliver(
        self, agent: AgentSpec, envelope: Envelope, span: TraceContext, timeout_s: float
    ) -> AgentReply:
        if agent.name != "a":
            return await super().deliver(agent, envelope, span, timeout_s)
        await self.called("b")
        raise _Abort


def test_a_call_that_ends_the_dispatch_leaves_no_sibling_running() -> None:
    agents, events = AbortingA(), RecordingEvents()
    agents.script("b", Hold())
    plan = routing().current().config.table.plan("fanout", "to-fanout", None)
    envelope = Envelope.of(signal("fanout"), plan.kind)

    async def scenario() -> None:
        calls = dispatcher(agents, events)
        with pytest.raises(_Abort):
            await calls.dispatch(plan, envelope, trace(), float("inf"))
        # Cancelled before the dispatch ended, not left calling its agent after the answer.
        assert agents.cancelled == ["b"]

    asyncio.run(scenario())
