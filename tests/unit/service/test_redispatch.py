"""The one re-dispatch path: what replay and recovery send again is what the intake sent, and
the plans they make follow the routing file as it is now."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from router_service.domain.errors import PermanentAgentError
from router_service.domain.routing import Mode
from router_service.domain.signal import Signal
from router_service.service.intake import Intake
from router_service.service.ports import Envelope
from router_service.service.redispatch import Redispatcher, StoredSignal
from tests.support.wiring import trace, wire

FIELDS = ("log_id", "sender_id", "kind", "payload", "payload_json", "metadata", "timestamp")


def odd_signal() -> Signal:
    """A payload whose canonical text is easy to get wrong when rebuilt from storage."""
    return Signal.create(
        sender_id="sender-é",
        payload={"route": "solo", "n": 1e-7, "big": 10**30, "s": "line\nbreak", "z": [None]},
        timestamp=datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        metadata={"tags": ["x", "y"], "depth": {"a": 1}},
        log_id="sig-odd",
    )


def stored_fanout() -> StoredSignal:
    base = odd_signal()
    return StoredSignal(
        log_id=base.log_id,
        sender_id=base.sender_id,
        payload=base.payload,
        metadata=base.metadata,
        timestamp=base.timestamp,
        kind="fanout",
        rule="to-fanout",
        mode=Mode.AGGREGATE,
        trace_id="1" * 32,
    )


def test_a_dead_letter_and_a_log_row_send_the_envelope_the_intake_sent() -> None:
    w = wire()
    original = odd_signal()
    first = Envelope.of(original, "solo")
    w.agents.script("a", PermanentAgentError("a said no"))
    asyncio.run(Intake(w.ctx).route(original, None, trace()))

    async def stored() -> tuple[StoredSignal, StoredSignal]:
        [entry] = await w.store.claim_dead_letters(
            limit=10, ids=None, owner="router-1", lease_s=5.0
        )
        row = await w.store.get("sig-odd")
        assert row is not None
        return StoredSignal.from_dead_letter(entry), StoredSignal.from_log(row)

    for again in asyncio.run(stored()):
        envelope = again.envelope()
        assert {f: getattr(envelope, f) for f in FIELDS} == {f: getattr(first, f) for f in FIELDS}


def test_plans_follow_the_routing_file_as_it_is_now() -> None:
    w = wire()
    kept = stored_fanout()
    redispatch = Redispatcher(w.ctx)
    by_kind = redispatch.plan_for_kind(kept)
    assert (by_kind.agent_names, by_kind.mode) == (["a", "b"], Mode.AGGREGATE)
    # Recovery names the agents it was routed to; one no longer configured is left out.
    named = redispatch.plan_for_agents(kept, ["b", "gone", "a"])
    assert (named.agent_names, named.mode) == (["b", "a"], Mode.AGGREGATE)
    alone = redispatch.plan_for_agents(kept, ["b"], Mode.FALLBACK)
    assert (alone.agent_names, alone.mode) == (["b"], Mode.FALLBACK)
    assert redispatch.agent("gone") is None


def test_a_re_dispatch_reaches_the_planned_agents_under_the_original_log_id() -> None:
    w = wire()
    kept = stored_fanout()
    redispatch = Redispatcher(w.ctx)
    results = asyncio.run(redispatch.send(kept, redispatch.plan_for_kind(kept), trace()))
    assert [(r.agent, r.ok) for r in results] == [("a", True), ("b", True)]
    assert sorted((c.agent, c.log_id) for c in w.agents.calls) == [
        ("a", "sig-odd"),
        ("b", "sig-odd"),
    ]
