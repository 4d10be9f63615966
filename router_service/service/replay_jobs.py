"""Replays as guarded jobs: select by ids or filter, preview (dry run), run at a pace, cancel,
resume, and survive the death of the process running them.

A job is a row (``replay_jobs``): who started it, the filter with its **snapshot bound** (the
largest entry id when the selection was surveyed; entries created later are left out, so a real
run of a dry run's ``snapshot`` handles that set and no more), the pace, the counts and a cursor
(every selected entry up to that id has been handled). Its runner walks the selection in id
order, claims one entry at a time (the same claim as every replayer), hands it to the
``Replayer`` (which records the attempt, as for every replay), and saves progress, which also
renews its lease and tells it whether a cancel was asked: a cancel stops the job after the entry
in hand. A paced job also stops during its wait for the next entry: at once for a cancel asked of
this process, within ``CANCEL_CHECK_S`` for one asked of another (its flag is read from the
store). A runner that dies stops renewing; when the lease runs out, any replica takes the job
over from its cursor, and waits for the claim on the entry the dead runner had in hand to run
out. A stopping process ends its jobs after their entry in hand and releases them at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from router_service.domain.errors import (
    InvalidState,
    NotFound,
    Overloaded,
    StorageError,
    TooManyReplayJobs,
    ValidationFailed,
)
from router_service.domain.signal import canonical_json, sha256_hex
from router_service.domain.trace import TraceContext, new_span_id, new_trace_id
from router_service.service.context import Collaborators
from router_service.service.records import (
    DeadLetterFilter,
    DeadLetterQuery,
    DeadLetterRecord,
    ReplayJobProgress,
    ReplayJobRecord,
)
from router_service.service.replay import Replayer, ReplaySummary

BATCH = 50
SAMPLE = 10
# A selection this small, unpaced, is replayed within the request; larger ones in the background.
INLINE_MAX = 100
# Background jobs one process runs at once, by default (each is paced; more would only share
# the same agents, and each paced wait reads the store every ``CANCEL_CHECK_S``).
MAX_LOCAL_JOBS = 4
_MAX_LEASE_S = 3600.0
# A paced job's pace (entries per second), whoever starts it: the API, the console, the CLI.
MIN_RATE = 0.01
MAX_RATE = 10_000.0
# Entry ids are 64-bit database keys: anything outside cannot exist (and would overflow).
MAX_ENTRY_ID = 2**63 - 1
# Entries one replay names by id, at most (the API's ``ids``, the console's checked entries).
MAX_IDS = 1000
# A snapshot token's length, at most (one a server issues is about 40 characters).
MAX_SNAPSHOT_CHARS = 200
# How often a paced job waiting for its next entry reads the store for a cancel (one asked of
# another process; one asked of this process wakes it at once).
CANCEL_CHECK_S = 1.0


def _fingerprint(flt: DeadLetterFilter) -> str:
    """What a snapshot token is bound to: the filter without its bound."""
    return sha256_hex(canonical_json(dataclasses.replace(flt, upto_id=None).as_dict()))[:16]


def snapshot_token(flt: DeadLetterFilter, snapshot_id: int) -> str:
    raw = json.dumps([snapshot_id, _fingerprint(flt)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def snapshot_bound(flt: DeadLetterFilter, token: str) -> int:
    """The entry id a dry run's ``snapshot`` bounds the same filter at."""
    if len(token) > MAX_SNAPSHOT_CHARS:
        raise ValidationFailed("snapshot is not one this server issued")
    try:
        upto, fingerprint = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValidationFailed("snapshot is not one this server issued") from exc
    if not isinstance(upto, int) or isinstance(upto, bool) or not 0 <= upto <= MAX_ENTRY_ID:
        raise ValidationFailed("snapshot is not one this server issued")
    if fingerprint != _fingerprint(flt):
        raise ValidationFailed("snapshot was issued for another selection; dry-run this one")
    return upto


def _progress(cursor: int, counts: ReplaySummary) -> ReplayJobProgress:
    c = counts
    return ReplayJobProgress(cursor, c.replayed, c.succeeded, c.failed, c.exhausted, c.deferred)


@dataclass(frozen=True, slots=True)
class JobOrder:
    """What a replay job is asked for: its selection, by whom (a key's name, ``cli:<user>``),
    its pace (entries per second), how many entries at most, and the dry run it is bounded at
    (its ``snapshot`` token)."""

    flt: DeadLetterFilter
    by: str
    rate: float | None = None
    max_entries: int | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class DryRun:
    count: int
    snapshot: str
    snapshot_id: int
    sample: list[DeadLetterRecord]
    agents: dict[str, dict[str, Any]]  # name -> {entries, circuit, circuit_open}


class ReplayJobs:
    """Starts, runs, cancels and resumes replay jobs for this process."""

    def __init__(
        self,
        ctx: Collaborators,
        replayer: Replayer,
        *,
        lease_s: float,
        max_jobs: int = MAX_LOCAL_JOBS,
    ) -> None:
        self._store, self._routing = ctx.store, ctx.routing
        self._owner, self._deadline_s = ctx.owner, ctx.deadline_s
        self._replayer = replayer
        self._audit = ctx.events  # audit lines and replay attempts go to the events sink
        self._circuits = ctx.dispatcher.circuit_states
        self._lease_s = lease_s
        self._max_jobs = max_jobs
        self.running: dict[int, asyncio.Task[ReplayJobRecord | None]] = {}
        self._starting = 0  # jobs being started (surveyed, recorded), each with its slot held
        self._closing = False  # the process stops: jobs end after their entry in hand
        # Set by ``cancel`` for a job this process runs: wakes its pace's wait at once.
        self._cancelled: dict[int, asyncio.Event] = {}

    # --- selection ------------------------------------------------------------------------

    async def dry_run(self, flt: DeadLetterFilter, token: str | None = None) -> DryRun:
        """Exactly what a real run with the returned ``snapshot`` would take; sends nothing."""
        if token is not None:
            flt = dataclasses.replace(flt, upto_id=snapshot_bound(flt, token))
        # Unbounded, the survey's count is the bounded one: it counts, in one snapshot, the
        # entries up to the largest id that snapshot sees (its ``snapshot_id``). One survey,
        # then: it reads the whole selection.
        survey = await self._store.survey_dead_letters(flt)
        upto = flt.upto_id if flt.upto_id is not None else survey.snapshot_id
        bounded = dataclasses.replace(flt, upto_id=upto)
        sample = await self._store.select_dead_letters(bounded, after_id=0, limit=SAMPLE)
        circuits = self._circuits()
        agents: dict[str, dict[str, Any]] = {}
        routing = self._routing.current().config
        for agent, kind, entries in survey.groups:
            names = [agent] if agent else list(routing.table.route_for(kind).agents)
            for name in names:
                state = circuits.get(name, "closed")
                info = agents.setdefault(
                    name, {"entries": 0, "circuit": state, "circuit_open": state == "open"}
                )
                info["entries"] += entries
        return DryRun(survey.count, snapshot_token(flt, upto), upto, sample, agents)

    # --- jobs -----------------------------------------------------------------------------

    def _lease_for(self, rate: float | None) -> float:
        # Long enough for one paced entry and its replay, whatever the setting says.
        return min(
            max(self._lease_s, self._deadline_s * 4 + (3 / rate if rate else 0)), _MAX_LEASE_S
        )

    async def start(self, order: JobOrder) -> ReplayJobRecord:
        """Record a job for the order's selection bounded at its dry run's ``token`` (or now),
        held by this process. ``run`` or ``run_in_background`` does the work."""
        flt, rate, max_entries = order.flt, order.rate, order.max_entries
        if rate is not None and not MIN_RATE <= rate <= MAX_RATE:
            raise ValidationFailed(
                f"rate: between {MIN_RATE:g} and {MAX_RATE:g} entries per second"
            )
        if order.token is not None:
            flt = dataclasses.replace(flt, upto_id=snapshot_bound(flt, order.token))
        survey = await self._store.survey_dead_letters(flt)  # bounded as ``dry_run`` says
        if flt.upto_id is None:
            flt = dataclasses.replace(flt, upto_id=survey.snapshot_id)
        count = survey.count
        selected = min(count, max_entries) if max_entries is not None else count
        job = await self._store.create_replay_job(
            created_by=order.by,
            flt=flt,
            rate=rate,
            max_entries=max_entries,
            selected=selected,
            owner=self._owner,
            lease_s=self._lease_for(rate),
        )
        self._audit.audit(
            "replay.started",
            job_id=job.id,
            by=order.by,
            filter=flt.as_dict(),
            selected=selected,
            rate=rate,
            max=max_entries,
        )
        return job

    async def launch(
        self, order: JobOrder, *, background: bool = True
    ) -> tuple[ReplayJobRecord, bool]:
        """``start`` and run a job for a client of this process: within the call when it is
        small and unpaced and not asked for in the ``background`` (returns the job as it ended
        and True), else in the background (the job as started, False). A slot is held from the
        start: past ``max_jobs`` running here, ``TooManyReplayJobs`` and nothing is recorded."""
        with self._slot():
            job = await self.start(order)
        if order.rate is None and not background and job.selected <= INLINE_MAX:
            return (await self.run(job)) or job, True
        self.run_in_background(job)
        return job, False

    @property
    def _full(self) -> bool:
        return len(self.running) + self._starting >= self._max_jobs

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """A job's slot while it is started (until ``run_in_background`` counts it), or
        ``TooManyReplayJobs``: each running job's paced wait reads the store every
        ``CANCEL_CHECK_S`` and its batches take scan slots, so one client's loop of starts
        would take the pool from everyone else."""
        if self._full:
            raise TooManyReplayJobs(
                f"this process runs {self._max_jobs} replay jobs, the most it runs at once "
                "(REPLAY_MAX_JOBS); wait for one to finish, or cancel one"
            )
        self._starting += 1
        try:
            yield
        finally:
            self._starting -= 1

    def run_in_background(self, job: ReplayJobRecord) -> None:
        task = asyncio.create_task(self.run(job))
        self.running[job.id] = task
        task.add_done_callback(lambda _: self.running.pop(job.id, None))

    async def run(self, job: ReplayJobRecord) -> ReplayJobRecord | None:
        """Work ``job`` (held by this process) to its end, a cancel, or the loss of its lease.
        Returns the job as stored at the end (None if another replica took it over)."""
        try:
            state = await self._work(job, self._cancelled.setdefault(job.id, asyncio.Event()))
        except (StorageError, Overloaded) as exc:
            # The lease runs out and a replica (this one included) takes the job over. Every
            # connection busy (concurrent reads of the log, say) is as passing as the database
            # away: it failed the job for good, to be resumed by hand.
            self._audit.replay_job_stopped(job_id=job.id, error=exc, interrupted=True)
            return None
        except Exception as exc:
            self._audit.replay_job_stopped(job_id=job.id, error=exc, interrupted=False)
            state = "failed"
            await self._store.finish_replay_job(job.id, self._owner, state, repr(exc)[:500])
        finally:
            self._cancelled.pop(job.id, None)
        if state is None:
            return None
        final = await self._store.get_replay_job(job.id)
        if final is not None:
            self._audit.audit(
                "replay.finished",
                job_id=job.id,
                by=final.created_by,
                state=final.state,
                **dataclasses.asdict(final.progress),
            )
        return final

    async def _work(self, job: ReplayJobRecord, cancelled: asyncio.Event) -> str | None:
        if job.cancel_requested:  # asked of a runner that died before it could stop
            return await self._stopped(job.id, True)
        p = job.progress
        counts = ReplaySummary(p.replayed, p.succeeded, p.failed, p.exhausted, p.deferred)
        cursor = p.cursor_id
        lease_s = self._lease_for(job.rate)
        pace_s = 1.0 / job.rate if job.rate else 0.0
        next_slot = time.monotonic()
        while job.max_entries is None or counts.replayed < job.max_entries:
            room = BATCH if job.max_entries is None else job.max_entries - counts.replayed
            batch = await self._store.select_dead_letters(
                job.filter, after_id=cursor, limit=min(BATCH, room)
            )
            if not batch:
                break
            for entry in batch:
                if pace_s:
                    cancel = await self._pace(job.id, next_slot, cancelled)
                    if cancel is not False:
                        return await self._stopped(job.id, cancel)
                    next_slot = max(next_slot, time.monotonic()) + pace_s
                saved = _progress(cursor, counts)
                cancel = await self._replay_one(job.id, entry, counts, lease_s, saved, cancelled)
                if cancel is not False:
                    return await self._stopped(job.id, cancel)
                cursor = entry.id
                cancel = await self._store.save_replay_job_progress(
                    job.id, self._owner, _progress(cursor, counts), lease_s
                )
                if cancel is not False:
                    return await self._stopped(job.id, cancel)
                if self._closing:
                    return None  # its lease is released: a replica goes on from its cursor
                if job.max_entries is not None and counts.replayed >= job.max_entries:
                    break
        await self._store.finish_replay_job(job.id, self._owner, "done")
        return "done"

    async def _stopped(self, job_id: int, cancel: bool | None) -> str | None:
        """The end of a run before its selection's: cancelled (``cancel``), or None when the job
        is no longer this process's (another replica holds it now)."""
        if cancel is None:
            return None
        await self._store.finish_replay_job(job_id, self._owner, "cancelled")
        return "cancelled"

    async def _pace(self, job_id: int, slot: float, cancelled: asyncio.Event) -> bool | None:
        """Wait until ``slot`` (monotonic time) for the next entry; a cancel ends the wait. Returns
        whether a cancel was asked, None if the job is no longer this process's to run."""
        if slot <= time.monotonic():
            return cancelled.is_set()  # the last save of progress read the store's flag
        while (left := slot - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(min(left, CANCEL_CHECK_S)):
                    await cancelled.wait()
            except TimeoutError:
                pass
            if self._closing:
                return None  # not cancelled: taken over from its cursor
            if cancelled.is_set():
                return True
            job = await self._store.get_replay_job(job_id)
            if job is None or job.state != "running" or job.lease_owner != self._owner:
                return None
            if job.cancel_requested:
                return True
        return False

    async def _replay_one(
        self,
        job_id: int,
        entry: DeadLetterRecord,
        counts: ReplaySummary,
        lease_s: float,
        saved: ReplayJobProgress,
        cancelled: asyncio.Event,
    ) -> bool | None:
        """Replay ``entry`` if it is still pending: False to go on, else what ``_stopped``
        takes. An entry another replayer holds is this job's still: it is waited for, the job's
        lease renewed with ``saved`` meanwhile, until a live replayer finishes it or a dead one's
        claim runs out. Passed over, it stayed pending and uncounted while the job ended done:
        the entry a crashed or stopped runner had in hand, met by the replica taking over."""
        while not (
            claimed := await self._store.claim_dead_letters(
                limit=None, ids=[entry.id], owner=self._owner, lease_s=lease_s
            )
        ):
            if not await self._still_pending(entry.id):
                return False  # replayed, exhausted or pruned since it was selected
            cancel = await self._store.save_replay_job_progress(job_id, self._owner, saved, lease_s)
            if self._closing:
                return None
            if cancel is not False:
                return cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_CHECK_S):
                    await cancelled.wait()
            if self._closing:
                return None
            if cancelled.is_set():
                return True
        # A new trace for the replay, linked to the signal's original one.
        trace = TraceContext(new_trace_id(), new_span_id(), links=(claimed[0].trace_id,))
        await self._replayer.replay_claimed(claimed[0], counts, trace, job_id)
        return False

    async def _still_pending(self, entry_id: int) -> bool:
        query = DeadLetterQuery(status="pending", ids=(entry_id,), limit=1, stored_json=True)
        return bool((await self._store.list_dead_letters(query)).items)

    async def cancel(self, job_id: int, by: str) -> ReplayJobRecord:
        job = await self._store.cancel_replay_job(job_id)
        if job is None:
            raise NotFound(f"no replay job {job_id}")
        if job.state in ("done", "failed"):
            raise InvalidState(f"replay job {job_id} is {job.state}; nothing to cancel")
        if job.cancel_requested and job_id in self._cancelled:
            self._cancelled[job_id].set()  # this process runs it: stop its wait now
        self._audit.audit("replay.cancel", job_id=job_id, by=by, state=job.state)
        return job

    async def resume(self, job_id: int, by: str) -> ReplayJobRecord:
        if self._full:
            await self._why_not_resumable(job_id)  # a missing or finished job says so first
        with self._slot():
            job = await self._store.resume_replay_job(job_id, self._owner, self._lease_s)
        if job is None:
            await self._why_not_resumable(job_id)
            raise InvalidState(f"replay job {job_id} changed state meanwhile; try again")
        self._audit.audit("replay.resumed", job_id=job_id, by=by, cursor_id=job.progress.cursor_id)
        self.run_in_background(job)
        return job

    async def _why_not_resumable(self, job_id: int) -> None:
        """``NotFound`` or ``InvalidState`` when the job is missing or not cancelled or failed."""
        found = await self._store.get_replay_job(job_id)
        if found is None:
            raise NotFound(f"no replay job {job_id}")
        if found.state not in ("cancelled", "failed"):
            raise InvalidState(
                f"replay job {job_id} is {found.state}; only cancelled or failed jobs resume"
            )

    async def take_over_once(self) -> int:
        """Run a job whose runner died (its lease ran out), if any; for ``run_every``."""
        if self._full:  # no slot held while it looks: a start meanwhile is not refused for it
            return 0
        job = await self._store.take_over_replay_job(self._owner, self._lease_s)
        if job is None:
            return 0
        self._audit.audit(
            "replay.taken_over", job_id=job.id, by=job.created_by, cursor_id=job.progress.cursor_id
        )
        self.run_in_background(job)
        return 0  # one per tick: the others are left to other replicas

    async def close(self) -> None:
        """Stop this process's jobs after the entry each has in hand, within two deadlines, then
        cut them short; their leases are released by the caller for takeover. Cut short at once,
        an entry's replay may have reached its agent, to be sent again by the replica taking
        the job over once its claim ran out."""
        self._closing = True
        for waiting in self._cancelled.values():
            waiting.set()  # a paced wait ends now (not as a cancel: ``_closing`` says why)
        tasks = list(self.running.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self._deadline_s * 2)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
