"""Dead-letter replay: re-send to the agent(s) that failed, with the original log_id.

Every replay, whoever asks (``POST /dlq/replay``, ``replay-dlq``, the redelivery worker, a replay
job), goes through ``Replayer._replay_entry``, which records the attempt in the signal's delivery
history (``replay_attempts``) with the trace it went out under: the signal's own trace continued
(a re-sent A2A message stays the same message), or a job's new trace linked to it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from router_service.domain.outcome import Status, fold
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import Mode
from router_service.domain.trace import TraceContext, new_span_id, new_trace_id
from router_service.service.backlog import recount_backlog
from router_service.service.context import Collaborators
from router_service.service.records import DeadLetterRecord, ReplayAttemptRecord, ReplayResult
from router_service.service.redispatch import Redispatcher, StoredSignal


@dataclass(slots=True)
class Deferral:
    """Why entries were put off: one per agent whose open circuit held them back."""

    agent: str
    entries: int
    retry_in_s: float  # until the circuit lets a probe through (as of the last deferred entry)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "reason": "circuit_open",
            "entries": self.entries,
            "retry_in_s": round(self.retry_in_s, 1),
            "message": (
                f"{self.entries} {'entry' if self.entries == 1 else 'entries'} deferred: the "
                f"circuit of agent {self.agent!r} is open, next probe in "
                f"{math.ceil(self.retry_in_s)} s"
            ),
        }


@dataclass(slots=True)
class ReplaySummary:
    replayed: int = 0
    succeeded: int = 0
    failed: int = 0
    exhausted: int = 0
    deferred: int = 0  # not sent (the agent's circuit is open): still pending, nothing spent
    deferrals: dict[str, Deferral] = field(default_factory=dict)

    def defer(self, agent: str, retry_in_s: float) -> None:
        found = self.deferrals.get(agent)
        if found is None:
            self.deferrals[agent] = Deferral(agent, 1, retry_in_s)
        else:
            found.entries += 1
            found.retry_in_s = retry_in_s

    def plus(self, other: ReplaySummary) -> ReplaySummary:
        """Both summaries' counts together (a run made of several calls)."""
        total = ReplaySummary(
            replayed=self.replayed + other.replayed,
            succeeded=self.succeeded + other.succeeded,
            failed=self.failed + other.failed,
            exhausted=self.exhausted + other.exhausted,
            deferred=self.deferred + other.deferred,
        )
        for deferral in (*self.deferrals.values(), *other.deferrals.values()):
            found = total.deferrals.get(deferral.agent)
            if found is None:
                total.deferrals[deferral.agent] = Deferral(
                    deferral.agent, deferral.entries, deferral.retry_in_s
                )
            else:
                found.entries += deferral.entries
                found.retry_in_s = deferral.retry_in_s
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "exhausted": self.exhausted,
            "deferred": self.deferred,
            "deferred_reasons": [d.as_dict() for d in self.deferrals.values()],
        }


class Replayer:
    def __init__(
        self, ctx: Collaborators, *, max_replays: int, backoff: RetryPolicy | None = None
    ) -> None:
        self._store, self._dispatcher = ctx.store, ctx.dispatcher
        self._events = ctx.events
        self._deadline_s, self._owner = ctx.deadline_s, ctx.owner
        self._redispatch = Redispatcher(ctx)
        self._max_replays = max_replays
        # When a failed entry is due again (for the redelivery worker; manual replays ignore it).
        self._backoff = backoff or RetryPolicy(max_attempts=max_replays, base_s=5.0, cap_s=300.0)

    async def replay(
        self,
        *,
        limit: int | None = None,
        ids: Sequence[int] | None = None,
        on_entry: Callable[[ReplaySummary], None] | None = None,
        due_only: bool = False,
        pace_s: float = 0.0,
    ) -> ReplaySummary:
        """Replay up to ``limit`` oldest pending entries, or exactly the pending ``ids``.

        Named ``ids`` are an operator's "try now": they go out even through an open circuit, as
        its half-open probe. Bulk (``limit``) and scheduled replays respect an open circuit and
        defer. ``due_only`` skips entries whose backoff has not run out; ``pace_s`` spaces
        entries out (the redelivery worker's rate cap).
        """
        summary = ReplaySummary()
        next_slot = time.monotonic()
        last_id: int | None = None  # one call attempts an entry at most once
        named = sorted(set(ids)) if ids is not None else None  # in id order, as claimed
        # One entry claimed at a time, its lease covering its own replay: claimed by the
        # hundred, the last ones' lease ran out while the first were replayed (a slow or down
        # agent takes up to the deadline each), and another replayer took them and sent them
        # a second time.
        lease_s = self._deadline_s * 4 + pace_s
        while limit is None or summary.replayed < limit:
            if named is not None and not named:
                break
            entries = await self._store.claim_dead_letters(
                limit=None if named is not None else 1,
                ids=[named.pop(0)] if named is not None else None,
                owner=self._owner,
                lease_s=lease_s,
                due_only=due_only,
                after_id=None if named is not None else last_id,
            )
            if not entries:
                if named is not None:
                    continue  # not pending, or held by another replayer
                break
            [entry] = entries
            if pace_s:
                await asyncio.sleep(max(0.0, next_slot - time.monotonic()))
                next_slot = max(next_slot, time.monotonic()) + pace_s
            await self._replay_entry(entry, summary, probe=ids is not None)
            last_id = entry.id
            if on_entry is not None:
                on_entry(summary)
        await recount_backlog(self._store, self._events)
        return summary

    async def replay_claimed(
        self, entry: DeadLetterRecord, summary: ReplaySummary, trace: TraceContext, job_id: int
    ) -> str:
        """Replay one entry its caller claimed (replay jobs select and claim their own), under
        ``trace``, for ``job_id``. Returns its outcome (succeeded, pending, exhausted,
        deferred)."""
        return await self._replay_entry(entry, summary, trace=trace, job_id=job_id)

    async def _replay_entry(
        self,
        entry: DeadLetterRecord,
        summary: ReplaySummary,
        *,
        probe: bool = False,
        trace: TraceContext | None = None,
        job_id: int | None = None,
    ) -> str:
        """Send ``entry`` again (under ``trace``, or the signal's own trace continued), settle
        it, count it in ``summary`` and record the attempt in its signal's delivery history;
        returns the outcome."""
        trace = trace or TraceContext(entry.trace_id or new_trace_id(), new_span_id())
        result = await self._send(entry, probe, trace)
        retry_in_s = self._backoff.ceiling(entry.replay_count + 1)
        status = await self._store.finish_replay(entry, result, self._max_replays, retry_in_s)
        summary.replayed += 1
        if not result.attempted:
            summary.deferred += 1
            for agent in {str(r["agent"]) for r in result.results if not r.get("attempts")}:
                summary.defer(agent, self._dispatcher.circuit_retry_in(agent))
            outcome = "deferred"
        elif result.ok:
            summary.succeeded += 1
            outcome = "succeeded"
        else:
            summary.failed += 1
            outcome = "pending"
            if status == "exhausted":
                summary.exhausted += 1
                outcome = "exhausted"
        self._events.replayed(outcome=outcome)
        await self._record(entry, job_id, trace, outcome, result)
        return outcome

    async def _record(
        self,
        entry: DeadLetterRecord,
        job_id: int | None,
        trace: TraceContext,
        outcome: str,
        result: ReplayResult,
    ) -> None:
        """The attempt in its signal's delivery history, and its ``replay.attempt`` event."""
        await self._store.record_replay_attempt(
            ReplayAttemptRecord(
                log_id=entry.log_id,
                dead_letter_id=entry.id,
                job_id=job_id,
                agent=entry.agent,
                trace_id=trace.trace_id,
                outcome=outcome,
                error=result.error if not result.ok else None,
                created_at=datetime.now(UTC),
            )
        )
        self._events.replay_attempt(
            job_id=job_id, log_id=entry.log_id, outcome=outcome, trace=trace
        )

    async def _send(
        self, entry: DeadLetterRecord, probe: bool, trace: TraceContext
    ) -> ReplayResult:
        stored = StoredSignal.from_dead_letter(entry)
        if entry.agent is not None:
            # One agent's dead letter: that agent alone, with its own retries.
            if self._redispatch.agent(entry.agent) is None:
                return ReplayResult(
                    ok=False, error=f"agent {entry.agent!r} is no longer configured"
                )
            alone = self._redispatch.plan_for_agents(stored, [entry.agent], Mode.FALLBACK)
            (result,) = await self._redispatch.send(stored, alone, trace, probe=probe)
            return ReplayResult(
                ok=result.ok,
                error=result.error,
                results=[result.as_dict()],
                response=result.response,
                attempted=result.attempts > 0,
            )
        # A whole signal's dead letter: the route its kind has now.
        plan = self._redispatch.plan_for_kind(stored)
        results = await self._redispatch.send(stored, plan, trace, probe=probe)
        outcome = fold(plan.mode, results)
        errors = "; ".join(f"{r.agent}: {r.error}" for r in outcome.results if not r.ok)
        return ReplayResult(
            ok=outcome.status is Status.DELIVERED,
            error=errors or None,
            results=[r.as_dict() for r in outcome.results],
            response=outcome.response,
            attempted=any(r.attempts > 0 for r in outcome.results),
        )
