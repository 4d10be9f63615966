"""Background work every replica runs: finish what crashed replicas left behind, and redeliver
dead letters on a schedule.

A signal is claimed with a lease (owner, expiry = 2 x the request deadline). If its owner dies
mid-flight the lease runs out and any replica's sweeper takes it over: it dispatches again with the
same ``log_id`` and ``Idempotency-Key`` and records the outcome (or dead-letters it). Agents
therefore see a signal at least once across crashes, always under one key.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from router_service.domain.errors import StorageError
from router_service.domain.outcome import fold
from router_service.domain.trace import TraceContext, new_span_id
from router_service.service.backlog import recount_backlog
from router_service.service.context import Collaborators
from router_service.service.ports import Events
from router_service.service.records import LogRecord
from router_service.service.redispatch import Redispatcher, StoredSignal
from router_service.service.replay import Replayer


def sweep_batch(concurrency: int, lease_s: float, deadline_s: float) -> int:
    """How many expired signals one sweep may take over: only what it can finish within the
    lease it gives them. ``concurrency`` run at once, each for up to one deadline; one deadline
    of the lease is kept as margin for the database writes around them."""
    rounds = max(1, math.floor(lease_s / deadline_s) - 1)
    return concurrency * rounds


class Sweeper:
    """Takes over expired signals a batch at a time and finishes them before its own lease on
    them runs out, so no other replica's sweeper can take them over meanwhile.

    Recovery time after a crash: the crashed owner's lease (2 x the deadline) + up to
    ``SWEEP_INTERVAL_S`` + one deadline per ``concurrency`` signals per surviving replica.
    """

    def __init__(self, ctx: Collaborators, *, concurrency: int = 32) -> None:
        self._store, self._events = ctx.store, ctx.events
        self._owner = ctx.owner
        self._redispatch = Redispatcher(ctx)
        self._lease_s = ctx.deadline_s * 2
        # Bounded: a recovery storm after a crash must not starve live traffic.
        self._concurrency = concurrency
        self._batch = sweep_batch(concurrency, self._lease_s, ctx.deadline_s)

    async def sweep_once(self) -> int:
        """Finish one batch of expired signals; returns how many (the caller loops while >0)."""
        found = await self._store.reclaim_expired(self._owner, self._lease_s, self._batch)
        limit = asyncio.Semaphore(self._concurrency)

        async def finish(record: LogRecord) -> None:
            async with limit:
                await self._finish(record)

        await asyncio.gather(*(finish(record) for record in found))
        if found:
            # Recovered signals may have been dead-lettered: keep dlq_backlog current.
            await recount_backlog(self._store, self._events)
        return len(found)

    async def _finish(self, record: LogRecord) -> None:
        stored = StoredSignal.from_log(record)
        # The agents it was routed to, as the routing file knows them now.
        plan = self._redispatch.plan_for_agents(stored, record.routed_agents)
        trace = TraceContext(record.trace_id, new_span_id())
        started = time.perf_counter()
        results = await self._redispatch.send(stored, plan, trace)
        outcome = fold(plan.mode, results)
        created = await self._store.record(
            record.log_id, record.created_at, plan, outcome, (time.perf_counter() - started) * 1000
        )
        if created:
            self._events.dead_lettered(created)
        self._events.signal_recovered(
            log_id=record.log_id, status=outcome.status.value, trace_id=record.trace_id
        )


Step = Callable[[], Awaitable[int]]


async def run_every(interval_s: float, step_name: str, step: Step, events: Events) -> None:
    """Run ``step`` (an async callable returning how much it did) forever, every ``interval_s``
    when idle; a failure is reported and the step runs again on the next tick, never fatal: a
    task that ended here would end crash recovery (or redelivery) for the whole process, and
    silently."""
    while True:
        try:
            did = await step()
        except Exception as exc:  # the database away, or a bug: the next tick retries
            error = exc.message if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
            events.background_failed(step=step_name, error=error)
            did = 0
        if not did:
            await asyncio.sleep(interval_s)


def redelivery_step(replayer: Replayer, batch: int, rate_per_s: float) -> Step:
    """One pass of the redelivery worker: due entries only, at most ``rate_per_s``."""

    async def step() -> int:
        summary = await replayer.replay(limit=batch, due_only=True, pace_s=1.0 / rate_per_s)
        return summary.replayed

    return step
