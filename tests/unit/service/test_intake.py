"""The intake on its own: claim -> classify -> plan -> dispatch -> fold -> record, and what a
duplicate gets, over the in-memory store and fake agents."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from router_service.config.routing_source import RoutingSource
from router_service.domain.errors import Conflict, IdempotencyKeyReused, PermanentAgentError
from router_service.domain.outcome import Status
from router_service.domain.routing import Mode
from router_service.service.intake import Intake, RouteAnswer
from tests.support.fake_agents import Hold, Reply
from tests.support.wiring import ROUTING, signal, trace, wire


def test_a_delivered_signal_is_recorded_and_its_lease_ended() -> None:
    w = wire()
    w.agents.script("a", Reply({"seen": True}))
    answer = asyncio.run(Intake(w.ctx).route(signal("solo"), None, trace()))
    assert (answer.status, answer.kind, answer.rule, answer.mode) == (
        "delivered",
        "solo",
        "to-solo",
        "first_success",
    )
    assert (answer.response, answer.duplicate) == ({"seen": True}, False)
    row = w.store.signals["sig-1"]
    assert (row.status, row.response, row.routed_agents) == (
        Status.DELIVERED,
        {"seen": True},
        ["a"],
    )
    assert w.store.leases == {}
    assert w.store.letters == {}
    [finished] = w.events.named("signal_finished")
    assert (finished["status"], finished["duplicate"]) == (Status.DELIVERED, False)


def test_every_agent_failing_parks_the_signal_in_one_dead_letter() -> None:
    w = wire()
    w.agents.script("a", PermanentAgentError("HTTP 400"))
    w.agents.script("b", PermanentAgentError("HTTP 409"))
    answer = asyncio.run(Intake(w.ctx).route(signal("race"), None, trace()))
    assert answer.status == "dead_lettered"
    letter = w.store.letter("sig-1", None)
    assert (letter.kind, letter.mode, letter.status) == ("race", "first_success", "pending")
    assert letter.error in ("a: HTTP 400; b: HTTP 409", "b: HTTP 409; a: HTTP 400")
    assert w.events.named("dead_lettered") == [{"count": 1}]
    # The backlog gauge is told, and counts later, off the request (a count grows with the
    # queue, and its failure would answer 503 for a signal already recorded).
    assert w.backlog.changes == 1
    assert "dlq_backlog" not in w.store.calls


def test_aggregate_with_one_failing_agent_is_partial_with_a_dead_letter_for_it() -> None:
    w = wire()
    w.agents.script("b", PermanentAgentError("HTTP 500"))
    answer = asyncio.run(Intake(w.ctx).route(signal("fanout"), None, trace()))
    assert answer.status == "partial"
    assert answer.response == {"a": {"agent": "a"}, "b": None}
    assert w.store.letter("sig-1", "b").error == "HTTP 500"


def test_the_caller_may_override_the_routes_mode() -> None:
    w = wire()
    answer = asyncio.run(Intake(w.ctx).route(signal("race"), Mode.AGGREGATE, trace()))
    assert answer.mode == "aggregate"
    assert sorted(c.agent for c in w.agents.calls) == ["a", "b"]
    assert answer.response == {"a": {"agent": "a"}, "b": {"agent": "b"}}


def test_a_crash_inside_dispatch_parks_the_signal_instead_of_leaving_it_in_flight() -> None:
    w = wire()
    boom = RuntimeError("a bug")
    w.agents.script("a", boom)
    answer = asyncio.run(Intake(w.ctx).route(signal("solo"), None, trace()))
    assert answer.status == "dead_lettered"
    assert w.store.letter("sig-1", None).error == "a: internal error during dispatch"
    assert w.events.named("dispatch_crashed") == [{"log_id": "sig-1", "error": boom}]
    assert w.store.leases == {}


def test_a_finished_duplicate_gets_the_stored_answer_without_calling_agents() -> None:
    w = wire()

    async def scenario() -> tuple[RouteAnswer, RouteAnswer]:
        intake = Intake(w.ctx)
        first = await intake.route(signal("solo"), None, trace())
        return first, await intake.route(signal("solo"), None, trace())

    first, again = asyncio.run(scenario())
    assert (again.duplicate, again.status, again.response) == (True, "delivered", first.response)
    assert len(w.agents.calls) == 1
    assert [e["duplicate"] for e in w.events.named("signal_finished")] == [False, True]


def test_a_duplicate_of_a_signal_in_flight_waits_for_its_outcome() -> None:
    w = wire()
    slow = Hold(Reply({"late": True}))
    w.agents.script("a", slow)

    async def scenario() -> RouteAnswer:
        intake = Intake(w.ctx)
        original = asyncio.create_task(intake.route(signal("solo"), None, trace()))
        await w.agents.called("a")  # the original holds the claim now
        duplicate = asyncio.create_task(intake.route(signal("solo"), None, trace()))
        async with asyncio.timeout(2):
            while not any(n == "get" for n in w.store.calls):  # the duplicate is polling
                await asyncio.sleep(0.001)
        slow.release()
        await original
        return await duplicate

    answer = asyncio.run(scenario())
    assert (answer.duplicate, answer.status, answer.response) == (True, "delivered", {"late": True})
    assert len(w.agents.calls) == 1


def test_a_duplicate_still_in_flight_at_its_deadline_is_a_conflict() -> None:
    w = wire(deadline_s=0.05)
    slow = Hold()
    w.agents.script("a", slow)

    async def scenario() -> None:
        intake = Intake(w.ctx)
        original = asyncio.create_task(intake.route(signal("solo"), None, trace()))
        await w.agents.called("a")
        try:
            with pytest.raises(Conflict, match="still in progress"):
                await intake.route(signal("solo"), None, trace())
        finally:
            slow.release()
            await original

    asyncio.run(scenario())
    assert len(w.agents.calls) == 1


def test_the_same_log_id_with_another_payload_is_refused() -> None:
    w = wire()

    async def scenario() -> None:
        intake = Intake(w.ctx)
        await intake.route(signal("solo"), None, trace())
        with pytest.raises(IdempotencyKeyReused):
            await intake.route(signal("solo", note="changed"), None, trace())

    asyncio.run(scenario())
    assert len(w.agents.calls) == 1


def test_each_signal_is_routed_by_the_routing_version_current_when_it_arrives(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    source = RoutingSource.from_file(path)
    w = wire()
    intake = Intake(replace(w.ctx, routing=source))

    async def scenario() -> tuple[RouteAnswer, RouteAnswer]:
        before = await intake.route(signal("solo", log_id="s-1"), None, trace())
        path.write_text(ROUTING.replace("solo: {agents: [a]", "solo: {agents: [b]"))
        assert source.reload().changed
        return before, await intake.route(signal("solo", log_id="s-2"), None, trace())

    before, after = asyncio.run(scenario())
    assert (before.routed_agents, after.routed_agents) == (["a"], ["b"])
