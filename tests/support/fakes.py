"""Small in-memory stand-ins for the service's ports, so ``Dispatcher``, ``Intake``, ``Replayer``
and ``Sweeper`` run on their own: no HTTP, no database, no real waiting.

- ``FakeClock``: the dispatcher's clock and sleep; sleeping moves the clock, nothing waits.
- ``FakeAgents``: an ``AgentClient`` that plays a script per agent (replies, errors, holds).
- ``FakeStore``: the ``Store`` semantics the service relies on, in dicts (see its docstring).
- ``RecordingEvents``: an ``Events`` sink that remembers what it heard.

``wire(...)`` builds the collaborators from them and a routing file's text.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from router_service.adapters.db.records import merged_replay
from router_service.config.routing_file import parse_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.domain.breaker import GuardPolicy
from router_service.domain.errors import AgentError, StorageError
from router_service.domain.outcome import Outcome, Status
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec, Plan
from router_service.domain.signal import Signal
from router_service.domain.trace import TraceContext
from router_service.service.context import Collaborators
from router_service.service.dispatch import Dispatcher
from router_service.service.ports import AgentReply, Envelope
from router_service.service.records import (
    Claim,
    DeadLetterQuery,
    DeadLetterRecord,
    LogQuery,
    LogRecord,
    Page,
    ReplayResult,
)

# ---------------------------------------------------------------------------------- the clock


class FakeClock:
    """A ``perf_counter`` stand-in whose ``sleep`` moves time on at once (and yields once)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------------- the agents


@dataclass(frozen=True, slots=True)
class Reply:
    body: Any = None
    status_code: int = 200


@dataclass(slots=True)
class Hold:
    """The attempt waits until ``release()`` (then plays ``then``), or until it is cancelled."""

    then: Reply | AgentError | Exception = field(default_factory=Reply)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


@dataclass(frozen=True, slots=True)
class Takes:
    """The attempt lasts ``seconds`` of the fake clock (no real time), then plays ``then``."""

    seconds: float
    then: Reply | AgentError | Exception = field(default_factory=Reply)


Step = Reply | Hold | Takes | AgentError | Exception


@dataclass(frozen=True, slots=True)
class Call:
    agent: str
    log_id: str
    protocol: str
    timeout_s: float
    trace_id: str
    payload: Any


class FakeAgents:
    """``AgentClient`` for every protocol: each agent plays its script, one step per attempt;
    an agent with no step left answers 200 with ``{"agent": name}``."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self._clock = clock
        self._scripts: dict[str, list[Step]] = {}
        self.calls: list[Call] = []
        self.cancelled: list[str] = []  # agents whose attempt was cancelled mid-call
        self._called = asyncio.Condition()

    def script(self, agent: str, *steps: Step) -> None:
        self._scripts.setdefault(agent, []).extend(steps)

    def calls_to(self, agent: str) -> list[Call]:
        return [c for c in self.calls if c.agent == agent]

    async def called(self, agent: str, times: int = 1, within_s: float = 2.0) -> None:
        """Wait until ``agent`` was called ``times`` times (a condition, not a guess)."""
        async with asyncio.timeout(within_s), self._called:
            await self._called.wait_for(lambda: len(self.calls_to(agent)) >= times)

    async def deliver(
        self, agent: AgentSpec, envelope: Envelope, span: TraceContext, timeout_s: float
    ) -> AgentReply:
        self.calls.append(
            Call(
                agent.name,
                envelope.log_id,
                agent.protocol.value,
                timeout_s,
                span.trace_id,
                envelope.payload,
            )
        )
        async with self._called:
            self._called.notify_all()
        script = self._scripts.get(agent.name)
        step: Step = script.pop(0) if script else Reply({"agent": agent.name})
        return await self._play(agent.name, step)

    async def _play(self, agent: str, step: Step) -> AgentReply:
        if isinstance(step, Hold):
            try:
                await step.released.wait()
            except asyncio.CancelledError:
                self.cancelled.append(agent)
                raise
            return await self._play(agent, step.then)
        if isinstance(step, Takes):
            assert self._clock is not None, "Takes needs FakeAgents(clock)"
            self._clock.advance(step.seconds)
            return await self._play(agent, step.then)
        if isinstance(step, Exception):
            raise step
        await asyncio.sleep(0)  # an answer is never synchronous on a real wire
        return AgentReply(step.status_code, step.body)


# ---------------------------------------------------------------------------------- the store


@dataclass(slots=True)
class _Lease:
    owner: str
    expires_at: datetime


@dataclass(slots=True)
class _Letter:
    record: DeadLetterRecord
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None
    next_attempt_at: datetime | None = None


class FakeStore:
    """The ``Store`` in dicts, with the semantics the service relies on (as on both databases):

    - ``claim`` is atomic: the first caller of a ``log_id`` wins and takes a lease; later ones
      get the existing row.
    - ``record`` ends the lease; the first final outcome wins, and only it creates dead letters
      (one per ``(log_id, agent)``, ``agent`` None for the whole signal).
    - ``claim_dead_letters`` takes pending, unclaimed (or claim-expired) entries in id order;
      ``finish_replay`` settles one (replayed / pending / exhausted; not attempted = deferred).
    - ``reclaim_expired`` takes over signals whose lease ran out; ``release_leases`` ends an
      owner's leases now.

    Time is the store's own (``advance``); it also ticks a microsecond per read, as time passes
    between a real database's statements. Every method yields once before its (atomic) work.
    ``fail_next`` makes the next call raise ``StorageError``.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = start
        self.signals: dict[str, LogRecord] = {}
        self.leases: dict[str, _Lease] = {}
        self.letters: dict[int, _Letter] = {}
        self._ids = itertools.count(1)
        self.fail_next: StorageError | None = None
        self.calls: list[str] = []  # method names, in call order

    def now(self) -> datetime:
        self._now += timedelta(microseconds=1)
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def _enter(self, method: str) -> None:
        self.calls.append(method)
        await asyncio.sleep(0)
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    def letter(self, log_id: str, agent: str | None = None) -> DeadLetterRecord:
        found = [
            e.record
            for e in self.letters.values()
            if e.record.log_id == log_id and e.record.agent == agent
        ]
        assert len(found) == 1, (log_id, agent, found)
        return found[0]

    async def close(self) -> None:
        return None

    async def ping(self) -> float:
        await self._enter("ping")
        return 0.0

    async def schema_revision(self) -> str | None:
        return "fake"

    async def claim(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> Claim:
        await self._enter("claim")
        existing = self.signals.get(signal.log_id)
        if existing is not None:
            return Claim(record=existing)
        now = self.now()
        self.leases[signal.log_id] = _Lease(lease_owner, now + timedelta(seconds=lease_s))
        self.signals[signal.log_id] = LogRecord(
            log_id=signal.log_id,
            trace_id=trace_id,
            sender_id=signal.sender_id,
            payload_hash=signal.payload_hash,
            payload=signal.payload,
            metadata=signal.metadata,
            signal_ts=signal.timestamp,
            kind=plan.kind,
            rule=plan.rule,
            mode=plan.mode.value,
            routed_agents=plan.agent_names,
            status=Status.IN_PROGRESS,
            results=None,
            response=None,
            latency_ms=None,
            created_at=now,
            updated_at=now,
        )
        return Claim(claimed_at=now)

    async def get(self, log_id: str) -> LogRecord | None:
        await self._enter("get")
        return self.signals.get(log_id)

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int:
        await self._enter("record")
        self.leases.pop(log_id, None)
        row = self.signals[log_id]
        assert row.created_at == created_at, "record names the claimed row by its created_at"
        if row.status is not Status.IN_PROGRESS:
            return 0  # the first final outcome wins
        now = self.now()
        self.signals[log_id] = replace(
            row,
            status=outcome.status,
            results=[r.as_dict() for r in outcome.results],
            response=outcome.response,
            latency_ms=latency_ms,
            updated_at=now,
        )
        created = 0
        for letter in outcome.dead_letters:
            if any(
                e.record.log_id == log_id and e.record.agent == letter.agent
                for e in self.letters.values()
            ):
                continue
            entry_id = next(self._ids)
            self.letters[entry_id] = _Letter(
                DeadLetterRecord(
                    id=entry_id,
                    log_id=log_id,
                    agent=letter.agent,
                    kind=plan.kind,
                    mode=plan.mode.value,
                    payload=row.payload,
                    error=letter.error,
                    attempts=letter.attempts,
                    replay_count=0,
                    status="pending",
                    created_at=now,
                    last_attempt_at=now,
                    sender_id=row.sender_id,
                    metadata=row.metadata,
                    signal_ts=row.signal_ts,
                    trace_id=row.trace_id,
                )
            )
            created += 1
        return created

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]:
        await self._enter("list_logs")
        rows = [
            r
            for r in self.signals.values()
            if query.status in (None, r.status.value) and query.kind in (None, r.kind)
        ]
        rows.sort(key=lambda r: (r.created_at, r.log_id), reverse=True)
        return Page(rows[: query.limit], None)

    async def list_dead_letters(self, query: DeadLetterQuery) -> Page[DeadLetterRecord]:
        await self._enter("list_dead_letters")
        rows = [
            e.record
            for _, e in sorted(self.letters.items())
            if query.status in (None, e.record.status) and query.agent in (None, e.record.agent)
        ]
        return Page(rows[: query.limit], None)

    async def claim_dead_letters(
        self,
        *,
        limit: int | None,
        ids: Sequence[int] | None,
        owner: str,
        lease_s: float,
        due_only: bool = False,
        after_id: int | None = None,
    ) -> list[DeadLetterRecord]:
        await self._enter("claim_dead_letters")
        now = self.now()
        taken: list[DeadLetterRecord] = []
        for entry_id, entry in sorted(self.letters.items()):
            if limit is not None and len(taken) >= limit:
                break
            if entry.record.status != "pending":
                continue
            if entry.claim_expires_at is not None and entry.claim_expires_at >= now:
                continue
            if due_only and entry.next_attempt_at is not None and entry.next_attempt_at > now:
                continue
            if (after_id is not None and entry_id <= after_id) or (
                ids is not None and entry_id not in ids
            ):
                continue
            entry.claimed_by, entry.claim_expires_at = owner, now + timedelta(seconds=lease_s)
            taken.append(entry.record)
        return taken

    async def finish_replay(
        self,
        entry: DeadLetterRecord,
        result: ReplayResult,
        max_replays: int,
        retry_in_s: float = 0.0,
    ) -> str:
        await self._enter("finish_replay")
        now = self.now()
        held = self.letters[entry.id]
        held.claimed_by = held.claim_expires_at = None
        held.next_attempt_at = now + timedelta(seconds=retry_in_s)
        if not result.attempted:
            return "pending"
        count = entry.replay_count + 1
        status = "replayed" if result.ok else "exhausted" if count >= max_replays else "pending"
        held.record = replace(
            held.record,
            status=status,
            replay_count=count,
            error=result.error or entry.error,
            last_attempt_at=now,
        )
        if result.ok:
            row = self.signals[entry.log_id]
            outstanding = [
                e
                for e in self.letters.values()
                if e.record.log_id == entry.log_id and e.record.status != "replayed"
            ]
            response, results = merged_replay(
                entry, row.response, row.results, result.response, list(result.results)
            )
            self.signals[entry.log_id] = replace(
                row,
                status=Status.PARTIAL if outstanding else Status.DELIVERED,
                response=response,
                results=results,
                updated_at=now,
            )
        return status

    async def reclaim_expired(self, owner: str, lease_s: float, limit: int) -> list[LogRecord]:
        await self._enter("reclaim_expired")
        now = self.now()
        expired = sorted(
            (lease.expires_at, log_id)
            for log_id, lease in self.leases.items()
            if lease.expires_at < now
        )[:limit]
        taken = []
        for _, log_id in expired:
            self.leases[log_id] = _Lease(owner, now + timedelta(seconds=lease_s))
            if self.signals[log_id].status is Status.IN_PROGRESS:
                taken.append(self.signals[log_id])
        return taken

    async def release_leases(self, owner: str) -> int:
        await self._enter("release_leases")
        now = self.now()
        mine = [lease for lease in self.leases.values() if lease.owner == owner]
        for lease in mine:
            lease.expires_at = now
        return len(mine)

    async def prune(self, older_than: datetime, batch: int = 1000) -> int:
        await self._enter("prune")
        pending = {e.record.log_id for e in self.letters.values() if e.record.status == "pending"}
        doomed = [
            r.log_id
            for r in sorted(self.signals.values(), key=lambda r: r.created_at)
            if r.created_at < older_than
            and r.status is not Status.IN_PROGRESS
            and r.log_id not in pending
        ][:batch]
        for log_id in doomed:
            del self.signals[log_id]
            for entry_id in [i for i, e in self.letters.items() if e.record.log_id == log_id]:
                del self.letters[entry_id]
        return len(doomed)

    async def dlq_backlog(self) -> int:
        await self._enter("dlq_backlog")
        return sum(1 for e in self.letters.values() if e.record.status == "pending")


# ---------------------------------------------------------------------------------- the events


class RecordingEvents:
    """``Events`` that remembers every call as ``(name, arguments)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for seen, args in self.seen if seen == name]

    def _note(self, name: str, **args: Any) -> None:
        self.seen.append((name, args))

    def signal_received(self, kind: str) -> None:
        self._note("signal_received", kind=kind)

    def signal_finished(self, **args: Any) -> None:
        self._note("signal_finished", **args)

    def agent_attempt(self, **args: Any) -> None:
        self._note("agent_attempt", **args)

    def retry(self, *, agent: str, delay_s: float) -> None:
        self._note("retry", agent=agent, delay_s=delay_s)

    def circuit_state(self, *, agent: str, state: str) -> None:
        self._note("circuit_state", agent=agent, state=state)

    def circuit_rejected(self, *, agent: str) -> None:
        self._note("circuit_rejected", agent=agent)

    def hedge(self, *, agent: str, outcome: str) -> None:
        self._note("hedge", agent=agent, outcome=outcome)

    def sender_refused(self) -> None:
        self._note("sender_refused")

    def senders_waiting(self, count: int) -> None:
        self._note("senders_waiting", count=count)

    def dispatch_crashed(self, *, log_id: str, error: BaseException) -> None:
        self._note("dispatch_crashed", log_id=log_id, error=error)

    def signal_recovered(self, *, log_id: str, status: str, trace_id: str) -> None:
        self._note("signal_recovered", log_id=log_id, status=status, trace_id=trace_id)

    def background_failed(self, *, step: str, error: str) -> None:
        self._note("background_failed", step=step, error=error)

    def dead_lettered(self, count: int) -> None:
        self._note("dead_lettered", count=count)

    def dlq_backlog(self, size: int) -> None:
        self._note("dlq_backlog", size=size)

    def replayed(self, *, outcome: str) -> None:
        self._note("replayed", outcome=outcome)

    def db_call(self, *, operation: str, latency_s: float, ok: bool) -> None:
        self._note("db_call", operation=operation, ok=ok)

    def db_pool(self, *, in_use: int = 0, size: int = 0) -> None:
        self._note("db_pool", in_use=in_use, size=size)


# ---------------------------------------------------------------------------------- wiring

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
    agents, events = FakeAgents(), RecordingEvents()
    store = store or FakeStore()
    ctx = Collaborators(
        store,
        dispatcher(agents, events, policy=policy, guard=guard),
        routing(routing_text),
        events,
        deadline_s,
        owner,
    )
    return Wired(store, agents, events, ctx)


def signal(route: str, log_id: str = "sig-1", sender: str = "sender-1", **extra: Any) -> Signal:
    return Signal.create(
        sender_id=sender,
        payload={"route": route, **extra},
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        log_id=log_id,
    )


def trace() -> TraceContext:
    return TraceContext("1" * 32, "2" * 16)
