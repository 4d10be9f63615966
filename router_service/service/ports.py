"""The narrow seams the service talks through: the store, the agent client and the events sink."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from router_service.domain.classify import Classifier
from router_service.domain.outcome import Outcome
from router_service.domain.routing import AgentSpec, Plan, RoutingTable
from router_service.domain.signal import Signal
from router_service.domain.trace import TraceContext
from router_service.service.records import (
    Claim,
    DeadLetterFilter,
    DeadLetterQuery,
    DeadLetterRecord,
    DeadLetterSurvey,
    LogQuery,
    LogRecord,
    Page,
    Pruned,
    PrunePosition,
    ReplayAttemptRecord,
    ReplayJobProgress,
    ReplayJobRecord,
    ReplayResult,
)


class ReplayJobStore(Protocol):
    """Replay jobs and replay attempts (migration 0005): part of the ``Store``."""

    async def survey_dead_letters(self, flt: DeadLetterFilter) -> DeadLetterSurvey: ...

    async def select_dead_letters(
        self, flt: DeadLetterFilter, *, after_id: int, limit: int
    ) -> list[DeadLetterRecord]:
        """The selection's entries after ``after_id``, payload and metadata as ``StoredJson``:
        a job's batch needs their ids, a dry run's sample is written out as it is."""
        ...

    async def create_replay_job(
        self,
        *,
        created_by: str,
        flt: DeadLetterFilter,
        rate: float | None,
        max_entries: int | None,
        selected: int,
        owner: str,
        lease_s: float,
    ) -> ReplayJobRecord: ...

    async def get_replay_job(self, job_id: int) -> ReplayJobRecord | None: ...

    async def list_replay_jobs(
        self, limit: int, cursor: str | None = None
    ) -> Page[ReplayJobRecord]:
        """Newest first; ``cursor`` (a page's ``next_cursor``) goes on after that page."""
        ...

    async def save_replay_job_progress(
        self, job_id: int, owner: str, progress: ReplayJobProgress, lease_s: float
    ) -> bool | None:
        """Whether a cancel was asked; None when ``owner`` no longer holds the job."""
        ...

    async def finish_replay_job(
        self, job_id: int, owner: str, state: str, error: str | None = None
    ) -> None: ...

    async def cancel_replay_job(self, job_id: int) -> ReplayJobRecord | None:
        """Ask a running job to stop (at once when no live runner holds it); None when the
        job does not exist."""
        ...

    async def resume_replay_job(
        self, job_id: int, owner: str, lease_s: float
    ) -> ReplayJobRecord | None:
        """A cancelled or failed job running again from its cursor, held by ``owner``."""
        ...

    async def take_over_replay_job(self, owner: str, lease_s: float) -> ReplayJobRecord | None:
        """A running job whose runner died (lease expired), now held by ``owner``."""
        ...

    async def release_replay_jobs(self, owner: str) -> int: ...

    async def record_replay_attempt(self, attempt: ReplayAttemptRecord) -> None: ...

    async def replay_history(self, log_id: str) -> list[ReplayAttemptRecord]: ...


class Store(ReplayJobStore, Protocol):
    """The signal log, its idempotency keys and leases, the dead-letter queue and its replay
    jobs."""

    async def close(self) -> None: ...

    async def ping(self) -> float: ...

    async def schema_revision(self) -> str | None: ...

    async def maintenance_warnings(self) -> list[str]:
        """What in the database's own settings will let the log's tables grow without bound
        (one sentence each, for the startup log); empty when nothing does."""
        ...

    async def claim(
        self, signal: Signal, plan: Plan, trace_id: str, lease_owner: str, lease_s: float
    ) -> Claim: ...

    async def get(self, log_id: str) -> LogRecord | None: ...

    async def record(
        self, log_id: str, created_at: datetime, plan: Plan, outcome: Outcome, latency_ms: float
    ) -> int | None:
        """The claimed signal's outcome, its lease ended, its dead letters parked; returns the
        dead letters created, or None when nothing was written: the signal was finished already
        (another owner took it over once its lease ran out; the first outcome wins)."""
        ...

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
    ) -> str:
        """Settle a claimed entry's replay; its status after, or ``SUPERSEDED`` when nothing
        was written: the entry is no longer pending, or its claim (``entry.claimed_by`` and
        ``claim_expires_at``) ran out and another replayer holds it. A success is written
        whoever holds it, and the holder's end is then superseded."""
        ...

    async def reclaim_expired(self, owner: str, lease_s: float, limit: int) -> list[LogRecord]: ...

    async def release_leases(self, owner: str) -> int: ...

    async def prune(
        self, older_than: datetime, batch: int = 1000, after: PrunePosition | None = None
    ) -> Pruned:
        """Delete up to ``batch`` finished signals created before ``older_than``, oldest
        first and after ``after`` (the previous batch's ``resume_after``), with their settled
        dead letters and their idempotency keys. Signals in flight or with a pending dead
        letter are kept."""
        ...

    async def dlq_backlog(self) -> int: ...


class RoutingRules(Protocol):
    """One validated version of the routing file, as the service reads it."""

    @property
    def agents(self) -> Mapping[str, AgentSpec]: ...

    @property
    def classifier(self) -> Classifier: ...

    @property
    def table(self) -> RoutingTable: ...


class RoutingVersion(Protocol):
    @property
    def config(self) -> RoutingRules: ...

    @property
    def version(self) -> str:
        """The routing file's content hash, recorded with every signal it routes."""
        ...

    @property
    def file(self) -> str:
        """Where the version was read from (a description for one built in memory)."""
        ...


class Routing(Protocol):
    """The routing source (``config.routing_source.RoutingSource``): ask ``current()`` for each
    piece of work and route it wholly by what it returns; never keep a copy."""

    def current(self) -> RoutingVersion: ...


@dataclass(slots=True)
class Envelope:
    """The signal as every agent of it sees it, in no wire format: each protocol's client
    encodes it (``encoded`` keeps one encoding per protocol, reused across agents and retries).
    ``log_id`` is the idempotency key (HTTP) and the message id (A2A)."""

    log_id: str
    sender_id: str
    kind: str
    payload: Any
    payload_json: str  # the canonical text already made for the log
    metadata: Any
    timestamp: datetime
    _wire: dict[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, signal: Signal, kind: str) -> Envelope:
        """The signal as its agents see it."""
        return cls(
            log_id=signal.log_id,
            sender_id=signal.sender_id,
            kind=kind,
            payload=signal.payload,
            payload_json=signal.payload_json,
            metadata=signal.metadata,
            timestamp=signal.timestamp,
        )

    def encoded(self, protocol: str, encode: Callable[[Envelope], bytes]) -> bytes:
        body = self._wire.get(protocol)
        if body is None:
            body = self._wire[protocol] = encode(self)
        return body


@dataclass(frozen=True, slots=True)
class AgentReply:
    status_code: int
    body: Any


class AgentClient(Protocol):
    """One protocol's client (HTTP, A2A): the wire format lives behind this seam."""

    async def deliver(
        self, agent: AgentSpec, envelope: Envelope, span: TraceContext, timeout_s: float
    ) -> AgentReply:
        """One attempt; raises ``RetryableAgentError`` or ``PermanentAgentError`` (or its
        ``AgentNeedsInput``)."""
        ...


class Backlog(Protocol):
    """The dead-letter backlog gauge (``service/backlog.py``)."""

    def changed(self) -> None:
        """Dead letters were added: count the backlog again soon; returns at once."""


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

    def hedge(self, *, agent: str, outcome: str) -> None:
        """A hedge call: ``won``, ``lost``, ``failed``, or ``no_budget`` (not made)."""

    def sender_refused(self) -> None:
        """A signal refused because its sender had too many in flight."""

    def senders_waiting(self, count: int) -> None:
        """Distinct senders with attempts waiting for an agent slot."""

    def outcome_write_retry(self, *, log_id: str, attempt: int, delay_s: float, error: str) -> None:
        """A dispatched signal's outcome could not be written (the database is away); it is
        written again after ``delay_s``, within the signal's lease (``service/intake.py``)."""

    def dispatch_crashed(self, *, log_id: str, error: BaseException) -> None:
        """A bug in dispatch, or an agent's answer we failed to read: that agent's call (or the
        whole signal's dispatch) ended as a failed result instead of leaving it in flight."""

    def signal_recovered(self, *, log_id: str, status: str, trace_id: str) -> None:
        """A sweeper finished a signal whose owner's lease ran out."""

    def outcome_superseded(self, *, log_id: str, own: str, stored: str) -> None:
        """A signal's owner came to write its outcome (``own``) and found it finished by
        another (``stored``), which took it over once the owner's lease ran out: the client is
        answered the stored one."""

    def audit(self, event: str, **fields: object) -> None:
        """An operator's action (replay, reload): one line naming the key, never the key."""
        ...

    def replay_attempt(
        self, *, job_id: int | None, log_id: str, outcome: str, trace: TraceContext
    ) -> None: ...

    def replay_job_stopped(self, *, job_id: int, error: BaseException, interrupted: bool) -> None:
        """A job's runner stopped early: ``interrupted`` (storage lost; another runner takes the
        job over) or failed (a bug)."""
        ...

    def background_failed(self, *, step: str, error: str) -> None:
        """One tick of a background loop (sweep, redelivery) failed; it runs again later."""

    def dead_lettered(self, count: int) -> None: ...

    def dlq_backlog(self, size: int) -> None: ...

    def replayed(self, *, outcome: str) -> None: ...

    def shadow_diff(
        self,
        *,
        log_id: str,
        active: Plan,
        shadow_kind: str,
        shadow_rule: str,
        shadow_agents: list[str],
    ) -> None: ...

    def db_call(self, *, operation: str, latency_s: float, ok: bool) -> None: ...

    def db_pool(self, *, in_use: int = 0, size: int = 0) -> None:
        """Connections taken (+1) or returned (-1), and pool capacity added."""
