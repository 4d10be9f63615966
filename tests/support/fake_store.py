"""The ``Store`` port in dicts, with the semantics the service relies on (see ``FakeStore``)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from router_service.adapters.db.records import merged_replay
from router_service.domain.errors import StorageError
from router_service.domain.outcome import Outcome, Status
from router_service.domain.routing import Plan
from router_service.domain.signal import Signal
from router_service.service.records import (
    SUPERSEDED,
    Claim,
    DeadLetterQuery,
    DeadLetterRecord,
    LogQuery,
    LogRecord,
    Page,
    Pruned,
    PrunePosition,
    ReplayAttemptRecord,
    ReplayResult,
)


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
    - ``record_replay_attempt`` appends to ``attempts``, which ``replay_history`` reads.

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
        self.attempts: list[ReplayAttemptRecord] = []

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

    async def maintenance_warnings(self) -> list[str]:
        return []

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
    ) -> int | None:
        await self._enter("record")
        self.leases.pop(log_id, None)
        row = self.signals[log_id]
        assert row.created_at == created_at, "record names the claimed row by its created_at"
        if row.status is not Status.IN_PROGRESS:
            return None  # the first final outcome wins
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
            taken.append(
                replace(entry.record, claimed_by=owner, claim_expires_at=entry.claim_expires_at)
            )
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
        theirs = (held.claimed_by, held.claim_expires_at) == (
            entry.claimed_by,
            entry.claim_expires_at,
        )
        if held.record.status != "pending" or not (theirs or (result.attempted and result.ok)):
            return SUPERSEDED
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

    async def prune(
        self, older_than: datetime, batch: int = 1000, after: PrunePosition | None = None
    ) -> Pruned:
        await self._enter("prune")
        pending = {e.record.log_id for e in self.letters.values() if e.record.status == "pending"}
        doomed = [
            r
            for r in sorted(self.signals.values(), key=lambda r: (r.created_at, r.log_id))
            if r.created_at < older_than
            and (after is None or (r.created_at, r.log_id) > after)
            and r.status is not Status.IN_PROGRESS
            and r.log_id not in pending
        ][:batch]
        gone = {r.log_id for r in doomed}
        for log_id in gone:
            del self.signals[log_id]
        for entry_id in [i for i, e in self.letters.items() if e.record.log_id in gone]:
            del self.letters[entry_id]
        last = (doomed[-1].created_at, doomed[-1].log_id) if len(doomed) == batch else None
        return Pruned(len(doomed), last)

    async def dlq_backlog(self) -> int:
        await self._enter("dlq_backlog")
        return sum(1 for e in self.letters.values() if e.record.status == "pending")

    async def record_replay_attempt(self, attempt: ReplayAttemptRecord) -> None:
        await self._enter("record_replay_attempt")
        self.attempts.append(attempt)

    async def replay_history(self, log_id: str) -> list[ReplayAttemptRecord]:
        await self._enter("replay_history")
        return [a for a in self.attempts if a.log_id == log_id]
