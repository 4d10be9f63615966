"""Sending a stored signal again under its original ``log_id`` (its agents' idempotency key):
the one path that dead-letter replay and crash recovery share.

The intake sends a live signal; these send what the log holds. Both rebuild the envelope the
same way, plan against the routing file as it is now, and dispatch within one request deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from router_service.domain.outcome import AgentResult
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.domain.signal import Signal
from router_service.domain.trace import TraceContext
from router_service.service.context import Collaborators
from router_service.service.ports import Envelope
from router_service.service.records import DeadLetterRecord, LogRecord


@dataclass(frozen=True, slots=True)
class StoredSignal:
    """What the log (or a dead letter) holds of a signal: enough to send it again."""

    log_id: str
    sender_id: str
    payload: Any
    metadata: Any
    timestamp: datetime
    kind: str
    rule: str
    mode: Mode
    trace_id: str

    @classmethod
    def from_log(cls, record: LogRecord) -> StoredSignal:
        return cls(
            log_id=record.log_id,
            sender_id=record.sender_id,
            payload=record.payload,
            metadata=record.metadata,
            timestamp=record.signal_ts,
            kind=record.kind,
            rule=record.rule,
            mode=Mode(record.mode),
            trace_id=record.trace_id,
        )

    @classmethod
    def from_dead_letter(cls, entry: DeadLetterRecord) -> StoredSignal:
        return cls(
            log_id=entry.log_id,
            sender_id=entry.sender_id,
            payload=entry.payload,
            metadata=entry.metadata,
            timestamp=entry.signal_ts or entry.created_at,
            kind=entry.kind,
            rule="replay",
            mode=Mode(entry.mode),
            trace_id=entry.trace_id,
        )

    def envelope(self) -> Envelope:
        """What agents receive again: the same envelope the intake built the first time."""
        signal = Signal.create(
            sender_id=self.sender_id,
            payload=self.payload,
            timestamp=self.timestamp,
            metadata=self.metadata,
            log_id=self.log_id,
        )
        return Envelope.of(signal, self.kind)


class Redispatcher:
    """Plans and sends stored signals again; replay and recovery each decide what to plan."""

    def __init__(self, ctx: Collaborators) -> None:
        self._dispatcher, self._routing = ctx.dispatcher, ctx.routing
        self._deadline_s = ctx.deadline_s

    def agent(self, name: str) -> AgentSpec | None:
        """The agent as the routing file knows it now (None: no longer configured)."""
        return self._routing.current().config.agents.get(name)

    def plan_for_kind(self, stored: StoredSignal) -> Plan:
        """The route the routing file has for the signal's kind now."""
        return self._routing.current().config.table.plan(stored.kind, stored.rule, stored.mode)

    def plan_for_agents(
        self, stored: StoredSignal, names: Sequence[str], mode: Mode | None = None
    ) -> Plan:
        """The named agents as the routing file knows them now; names no longer configured are
        left out."""
        known = self._routing.current().config.agents
        agents = tuple(known[name] for name in names if name in known)
        return Plan(stored.kind, stored.rule, mode or stored.mode, agents)

    async def send(
        self, stored: StoredSignal, plan: Plan, trace: TraceContext, *, probe: bool = False
    ) -> list[AgentResult]:
        """Dispatch ``plan`` within one request deadline from now. ``probe``: an operator's
        "try now", whose first attempt goes out even through an open circuit."""
        deadline = self._dispatcher.deadline_in(self._deadline_s)
        return await self._dispatcher.dispatch(
            plan, stored.envelope(), trace, deadline, probe=probe
        )
