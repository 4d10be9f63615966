"""A signal's path after the edge: claim log_id -> classify -> plan -> dispatch -> record."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from router_service.domain.classify import PayloadStrings
from router_service.domain.errors import (
    Conflict,
    IdempotencyKeyReused,
    Overloaded,
    StorageUnavailable,
)
from router_service.domain.outcome import AgentResult, Outcome, Status, fold
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import Mode, Plan
from router_service.domain.signal import Signal
from router_service.domain.trace import TraceContext
from router_service.service.context import Collaborators
from router_service.service.ports import Envelope, Routing
from router_service.service.records import LogRecord

# How often a duplicate re-reads a signal still in flight (doubling up to the cap).
_POLL_FIRST_S = 0.005
_POLL_CAP_S = 0.100

# A dispatched signal whose outcome the database failed to take (it is away, or every
# connection is busy) is written again, for at most this many request deadlines from the
# signal's arrival. Its lease runs two (``lease_s`` of the claim): once the lease has run out, a
# sweeper would take the signal for unfinished and send it again, which a written outcome
# prevents. The half deadline left over is the last write's time to finish.
OUTCOME_WRITE_DEADLINES = 1.5
OUTCOME_WRITE_RETRY = RetryPolicy(max_attempts=1_000_000, base_s=0.050, cap_s=0.500)


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    log_id: str
    trace_id: str
    kind: str
    rule: str
    mode: str
    routed_agents: list[str]
    status: str
    results: list[dict[str, Any]]
    response: Any
    duplicate: bool
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "trace_id": self.trace_id,
            "kind": self.kind,
            "rule": self.rule,
            "mode": self.mode,
            "routed_agents": self.routed_agents,
            "status": self.status,
            "results": self.results,
            "response": self.response,
            "duplicate": self.duplicate,
            "latency_ms": self.latency_ms,
        }


class Intake:
    """Routes one signal, exactly once per ``log_id`` across every process sharing the store."""

    def __init__(
        self,
        ctx: Collaborators,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store, self._dispatcher = ctx.store, ctx.dispatcher
        self._routing, self._events = ctx.routing, ctx.events
        self._backlog = ctx.backlog
        self._deadline_s, self._owner = ctx.deadline_s, ctx.owner
        self._shadow = ctx.shadow
        # The outcome's write retries wait and measure on these (``_record_again``).
        self._sleep, self._clock, self._rand = sleep, clock, rand

    def plan(
        self, signal: Signal, mode: Mode | None, strings: PayloadStrings | None = None
    ) -> Plan:
        # One read of the source: classification and plan come from the same version.
        active = self._routing.current()
        routing = active.config
        found = routing.classifier.classify(signal.payload, strings)
        return routing.table.plan(found.kind, found.rule, mode, active.version)

    async def route(self, signal: Signal, mode: Mode | None, trace: TraceContext) -> RouteAnswer:
        started = time.perf_counter()
        deadline = started + self._deadline_s
        if self._shadow is None:
            plan = self.plan(signal, mode)
        else:  # both classifiers read the payload's strings, gathered once
            strings = PayloadStrings(signal.payload)
            plan = self.plan(signal, mode, strings)
            self._compare_shadow(self._shadow, signal, plan, strings)
        self._events.signal_received(plan.kind)
        claim = await self._store.claim(
            signal, plan, trace.trace_id, self._owner, lease_s=self._deadline_s * 2
        )
        if claim.record is not None:
            record = await self._await_original(claim.record, signal, deadline)
            return self._stored_answer(record, trace, started, duplicate=True)

        envelope = Envelope.of(signal, plan.kind)
        try:
            results = await self._dispatcher.dispatch(plan, envelope, trace, deadline)
        except Exception as exc:
            # A bug must not leave the claimed signal stuck in flight: park it for replay.
            self._events.dispatch_crashed(log_id=signal.log_id, error=exc)
            results = [
                AgentResult(
                    agent=a.name,
                    ok=False,
                    status_code=None,
                    attempts=0,
                    latency_ms=0.0,
                    error="internal error during dispatch",
                )
                for a in plan.agents
            ]
        outcome = fold(plan.mode, results)
        latency_s = time.perf_counter() - started
        claimed_at = claim.claimed_at
        assert claimed_at is not None  # a won claim says when
        try:
            created = await self._store.record(
                signal.log_id, claimed_at, plan, outcome, latency_s * 1000
            )
        except (StorageUnavailable, Overloaded) as exc:
            write_for_s = started + self._deadline_s * OUTCOME_WRITE_DEADLINES - time.perf_counter()
            created = await self._record_again(
                signal.log_id, claimed_at, plan, outcome, latency_s, write_for_s, exc
            )
        if created is None:
            return await self._superseded(signal.log_id, outcome, trace, started)
        if created:
            self._events.dead_lettered(created)
        if outcome.dead_letters:
            self._backlog.changed()  # counted soon, off this request (``service/backlog.py``)
        agent_s = max((r.latency_ms for r in results), default=0.0) / 1000
        self._events.signal_finished(
            log_id=signal.log_id,
            kind=plan.kind,
            rule=plan.rule,
            status=outcome.status,
            agents=plan.agent_names,
            latency_s=latency_s,
            agent_s=agent_s,
            duplicate=False,
            trace=trace,
        )
        return RouteAnswer(
            log_id=signal.log_id,
            trace_id=trace.trace_id,
            kind=plan.kind,
            rule=plan.rule,
            mode=plan.mode.value,
            routed_agents=plan.agent_names,
            status=outcome.status.value,
            results=[r.as_dict() for r in outcome.results],
            response=outcome.response,
            duplicate=False,
            latency_ms=round(latency_s * 1000, 3),
        )

    async def _record_again(
        self,
        log_id: str,
        claimed_at: datetime,
        plan: Plan,
        outcome: Outcome,
        latency_s: float,
        write_for_s: float,
        failed: StorageUnavailable | Overloaded,
    ) -> int | None:
        """The outcome's write, after the database failed it for its absence
        (``StorageUnavailable``) or its busy pool (``Overloaded``): tried again with capped
        backoff and full jitter, for ``write_for_s``. The signal reached its agents already, and
        an outcome left unwritten has it sent again when its lease runs out. The write is
        idempotent (the first outcome wins; a dead letter is one per signal and agent). Past
        that time the last error answers, as before: 503, and the sweeper finishes the signal.
        Returns what ``Store.record`` does."""
        give_up = self._clock() + write_for_s
        attempt = 0
        while True:
            attempt += 1
            remaining = give_up - self._clock()
            delay = OUTCOME_WRITE_RETRY.next_delay(attempt, remaining, rand=self._rand)
            if delay is None:
                raise failed
            self._events.outcome_write_retry(
                log_id=log_id, attempt=attempt, delay_s=delay, error=failed.message
            )
            await self._sleep(delay)
            try:
                return await self._store.record(log_id, claimed_at, plan, outcome, latency_s * 1000)
            except (StorageUnavailable, Overloaded) as exc:
                failed = exc

    async def _superseded(
        self, log_id: str, outcome: Outcome, trace: TraceContext, started: float
    ) -> RouteAnswer:
        """The answer when another owner finished the signal first (this one's lease ran out,
        a process frozen past it): the stored outcome, the log's, not this dispatch's. An
        outcome write that went through but whose answer was lost comes here too, and finds
        its own."""
        record = await self._store.get(log_id)
        if record is None:  # pragma: no cover - a claimed row is never deleted while in flight
            raise StorageUnavailable("the signal's log row is gone")
        if record.status is not outcome.status:
            self._events.outcome_superseded(
                log_id=log_id, own=outcome.status.value, stored=record.status.value
            )
        return self._stored_answer(record, trace, started, duplicate=False)

    def _stored_answer(
        self, record: LogRecord, trace: TraceContext, started: float, *, duplicate: bool
    ) -> RouteAnswer:
        """The answer of the log's row: a duplicate's, or an owner's whose outcome was not the
        one written."""
        latency_s = time.perf_counter() - started
        self._events.signal_finished(
            log_id=record.log_id,
            kind=record.kind,
            rule=record.rule,
            status=record.status,
            agents=record.routed_agents,
            latency_s=latency_s,
            agent_s=0.0,
            duplicate=duplicate,
            trace=trace,
        )
        return RouteAnswer(
            log_id=record.log_id,
            trace_id=trace.trace_id,
            kind=record.kind,
            rule=record.rule,
            mode=record.mode,
            routed_agents=record.routed_agents,
            status=record.status.value,
            results=record.results or [],
            response=record.response,
            duplicate=duplicate,
            latency_ms=round(latency_s * 1000, 3),
        )

    def _compare_shadow(
        self, shadow: Routing, signal: Signal, plan: Plan, strings: PayloadStrings
    ) -> None:
        """Classify by the shadow file too; a different kind or agents is reported, and
        nothing else happens (the shadow never dispatches)."""
        config = shadow.current().config
        found = config.classifier.classify(signal.payload, strings)
        agents = config.table.route_for(found.kind).agents
        if found.kind != plan.kind or list(agents) != plan.agent_names:
            self._events.shadow_diff(
                log_id=signal.log_id,
                active=plan,
                shadow_kind=found.kind,
                shadow_rule=found.rule,
                shadow_agents=list(agents),
            )

    async def _await_original(
        self, record: LogRecord, signal: Signal, deadline: float
    ) -> LogRecord:
        """A duplicate never dispatches: it gets the original's outcome, or 409 if still busy."""
        if record.sender_id != signal.sender_id or record.payload_hash != signal.payload_hash:
            raise IdempotencyKeyReused(
                "this log_id was already used for a different sender_id or payload"
            )
        poll = _POLL_FIRST_S
        while record.status is Status.IN_PROGRESS:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise Conflict("a request with this log_id is still in progress; retry later")
            await asyncio.sleep(min(poll, remaining))
            poll = min(poll * 2, _POLL_CAP_S)
            latest = await self._store.get(signal.log_id)
            if latest is None:  # pragma: no cover - rows are never deleted while in flight
                raise Conflict("a request with this log_id is still in progress; retry later")
            record = latest
        return record
