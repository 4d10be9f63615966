"""The service's collaborators on the fakes, so ``Dispatcher``, ``Intake``, ``Replayer`` and
``Sweeper`` run on their own: no HTTP, no database, no real waiting.

The fakes, one module each:

- ``fake_clock.FakeClock``: the dispatcher's clock and sleep; sleeping moves the clock.
- ``fake_agents.FakeAgents``: an ``AgentClient`` that plays a script per agent (replies,
  errors, holds).
- ``fake_store.FakeStore``: the ``Store`` semantics the service relies on, in dicts.
- ``fake_events.RecordingEvents``: an ``Events`` sink that remembers what it heard.

``wire(...)`` builds the collaborators from them and a routing file's text; ``dispatcher(...)``
builds a dispatcher alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from router_service.config.routing_file import parse_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.domain.breaker import GuardPolicy
from router_service.domain.retry import RetryPolicy
from router_service.domain.signal import Signal
from router_service.domain.trace import TraceContext
from router_service.service.context import Collaborators
from router_service.service.dispatch import Dispatcher
from tests.support.fake_agents import FakeAgents
from tests.support.fake_clock import FakeClock
from tests.support.fake_events import CountedChanges, RecordingEvents
from tests.support.fake_store import FakeStore

# The payload's ``route`` field picks the kind; agents a, b, c (and an A2A one) by name.
ROUTING = """\
agents:
  - {name: a, url: 'http://a.test/agent'}
  - {name: b, url: 'http://b.test/agent'}
  - {name: c, url: 'http://c.test/agent', timeout_ms: 100}
  - {name: x, url: 'http://x.test/a2a', protocol: a2a}
rules:
  - {id: to-solo, kind: solo, when: {field: route, equals: solo}}
  - {id: to-race, kind: race, when: {field: route, equals: race}}
  - {id: to-chain, kind: chain, when: {field: route, equals: chain}}
  - {id: to-fanout, kind: fanout, when: {field: route, equals: fanout}}
  - {id: to-hedged, kind: hedged, when: {field: route, equals: hedged}}
  - {id: to-mixed, kind: mixed, when: {field: route, equals: mixed}}
routes:
  solo: {agents: [a], mode: first_success}
  race: {agents: [a, b], mode: first_success}
  chain: {agents: [a, b, c], mode: fallback}
  fanout: {agents: [a, b], mode: aggregate}
  hedged: {agents: [a, b], hedge: {after_ms: 10, max_extra: 1.0}}
  mixed: {agents: [a, x], mode: aggregate}
  default: {agents: [a], mode: first_success}
"""

NO_RETRIES = RetryPolicy(max_attempts=1)
# The breaker and the retry budget stay out of the way unless a test is about them.
LENIENT = GuardPolicy(failure_threshold=1_000_000, min_retries=1_000_000)


def routing(text: str = ROUTING) -> RoutingSource:
    return RoutingSource.fixed(parse_routing_config(text, "routing.yaml"))


def dispatcher(
    agents: FakeAgents,
    events: RecordingEvents,
    *,
    clock: FakeClock | None = None,
    policy: RetryPolicy = NO_RETRIES,
    guard: GuardPolicy = LENIENT,
    agent_timeout_s: float = 1.0,
    rand: Callable[[], float] = lambda: 0.5,
    a2a: FakeAgents | None = None,
) -> Dispatcher:
    """A dispatcher on the fakes. With ``clock``, deadlines and retry waits are on it; without,
    deadlines are real ``perf_counter`` instants (as ``Intake`` makes them) and waits take no
    time. ``a2a``: a separate client for A2A agents (else ``agents`` serves both)."""
    sleep: Callable[[float], Awaitable[None]] = clock.sleep if clock else FakeClock().sleep
    return Dispatcher(
        {"http": agents, "a2a": a2a or agents},
        events,
        policy=policy,
        agent_timeout_s=agent_timeout_s,
        fanout_concurrency=8,
        global_concurrency=16,
        guard_policy=guard,
        sleep=sleep,
        rand=rand,
        clock=clock or time.perf_counter,
    )


@dataclass(slots=True)
class Wired:
    store: FakeStore
    agents: FakeAgents
    events: RecordingEvents
    backlog: CountedChanges
    ctx: Collaborators


def wire(
    *,
    deadline_s: float = 2.0,
    owner: str = "router-1",
    policy: RetryPolicy = NO_RETRIES,
    guard: GuardPolicy = LENIENT,
    routing_text: str = ROUTING,
    store: FakeStore | None = None,
) -> Wired:
    """The collaborators of ``Intake``, ``Replayer`` and ``Sweeper``, on the fakes."""
    agents, events, backlog = FakeAgents(), RecordingEvents(), CountedChanges()
    store = store or FakeStore()
    ctx = Collaborators(
        store,
        dispatcher(agents, events, policy=policy, guard=guard),
        routing(routing_text),
        events,
        backlog,
        deadline_s,
        owner,
    )
    return Wired(store, agents, events, backlog, ctx)


def signal(route: str, log_id: str = "sig-1", sender: str = "sender-1", **extra: Any) -> Signal:
    return Signal.create(
        sender_id=sender,
        payload={"route": route, **extra},
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        log_id=log_id,
    )


def trace() -> TraceContext:
    return TraceContext("1" * 32, "2" * 16)
