"""The narrow seams the service talks through: the store, the agent client and the events sink."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import AgentSpec, Plan
from router_service.domain.signal import Signal
from router_service.observability.tracing import TraceContext


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One row of the signal log, as the service and the API see it."""

    log_id: str
    trace_id: str
    sender_id: str
    payload_hash: str
    payload: Any
    metadata: Any
    signal_ts: datetime
    kind: str
    rule: str
    mode: str
    routed_agents: list[str]
    status: Status
    results: list[dict[str, Any]] | None
    response: Any
    latency_ms: float | None
    created_at: datetime
    updated_at: datetime
    # The routing file version that routed it (None: routed before versions were recorded).
    routing_version: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    id: int
    log_id: str
    agent: str | None
    kind: str
    mode: str
    payload: Any
    error: str
    attempts: int
    replay_count: int
    status: str
    created_at: datetime
    last_attempt_at: datetime | None
    # Filled when the entry is claimed for replay: what the agents need to see again.
    sender_id: str = ""
    metadata: Any = None
    signal_ts: datetime | None = None
    trace_id: str = ""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LogQuery:
    sender_id: str | None = None
    kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    status: str | None = "pending"
    agent: str | None = None
    kind: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """``record`` is None when this caller won the claim, else the row that already held it.
    ``claimed_at``: when the winner's row was created (its key in the log, with ``log_id``)."""

    record: LogRecord | None = None
    claimed_at: datetime | None = None

    @property
    def won(self) -> bool:
        return self.record is None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How one dead-letter replay ended, for ``Store.finish_replay``."""

    ok: bool
    error: str | None = None
    results: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    response: Any = None
    # False when no agent was called (every circuit open): the replay is put off, not spent.
    attempted: bool = True


class Store(Protocol):
    """The signal log, its idempotency keys and leases, and the dead-letter queue."""

    async def close(self) -> None: ...

    async def ping(self) -> float: ...

    async def schema_revision(self) -> str | None: ...

    async def claim(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> Claim: ...

    async def get(self, log_id: str) -> LogRecord | None: ...

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int: ...

    async def list_logs(self, query: LogQuery) -> Page[LogRecord]: ...

    async def list_dead_letters(self, query: DeadLetterQuery) -> Page[DeadLetterRecord]: ...

    async def claim_dead_letters(
        self,
        *,
        limit: int | None,
        ids: Sequence[int] | None,
        owner: str,
        lease_s: float,
        due_only: bool = False,
        after_id: int | None = None,
    ) -> list[DeadLetterRecord]: ...

    async def finish_replay(
        self,
        entry: DeadLetterRecord,
        result: ReplayResult,
        max_replays: int,
        retry_in_s: float = 0.0,
    ) -> str: ...

    async def reclaim_expired(self, owner: str, lease_s: float, limit: int) -> list[LogRecord]: ...

    async def release_leases(self, owner: str) -> int: ...

    async def prune(self, older_than: datetime, batch: int = 1000) -> int: ...

    async def dlq_backlog(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AgentReply:
    status_code: int
    body: Any


class AgentClient(Protocol):
    async def call(
        self, agent: AgentSpec, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> AgentReply:
        """One attempt; raises ``RetryableAgentError`` or ``PermanentAgentError``."""
        ...


class Events(Protocol):
    """What the service tells observability. Implementations must not raise."""

    def signal_received(self, kind: str) -> None: ...

    def signal_finished(
        self,
        *,
        log_id: str,
        kind: str,
        rule: str,
        status: str,
        agents: list[str],
        latency_s: float,
        agent_s: float,
        duplicate: bool,
        trace: TraceContext,
    ) -> None: ...

    def agent_attempt(
        self,
        *,
        agent: str,
        outcome: str,
        status_code: int | None,
        latency_s: float,
        attempt: int,
        span: TraceContext,
        error: str | None,
    ) -> None: ...

    def retry(self, *, agent: str, delay_s: float) -> None: ...

    def circuit_state(self, *, agent: str, state: str) -> None: ...

    def circuit_rejected(self, *, agent: str) -> None: ...

    def dead_lettered(self, count: int) -> None: ...

    def dlq_backlog(self, size: int) -> None: ...

    def replayed(self, *, outcome: str) -> None: ...

    def db_call(self, *, operation: str, latency_s: float, ok: bool) -> None: ...

    def db_pool(self, *, in_use: int = 0, size: int = 0) -> None:
        """Connections taken (+1) or returned (-1), and pool capacity added."""
