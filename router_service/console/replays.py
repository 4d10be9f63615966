"""Dead-letter replays from the console: a selection, its dry-run preview, and the replay run.

Two functions are the seams to the operations API when it lands: ``preview`` (swap for the
API's ``dry_run``) and ``start_replay`` (swap for a replay job). Until then a run is an owned
task of this process, replaying the selected entries in small chunks at the chosen rate; it is
cancelled between chunks, so no claimed entry is left stranded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from dataclasses import dataclass, field

from router_service.config.routing_source import RoutingSource
from router_service.observability.logging import get_logger
from router_service.service.dispatch import Dispatcher
from router_service.service.ports import DeadLetterQuery, DeadLetterRecord, Store
from router_service.service.replay import Replayer, ReplaySummary

MAX_SELECTION = 2000  # entries one console replay takes; the rest stay for the next
SAMPLE = 10


@dataclass(frozen=True, slots=True)
class Selection:
    """Checked entries (``ids``), or every pending entry matching ``agent`` and ``kind``."""

    ids: tuple[int, ...] | None = None
    agent: str | None = None
    kind: str | None = None

    def query(self, limit: int, cursor: str | None) -> DeadLetterQuery:
        return DeadLetterQuery(
            status="pending",
            agent=self.agent,
            kind=self.kind,
            ids=self.ids,
            limit=limit,
            cursor=cursor,
        )


@dataclass(frozen=True, slots=True)
class Preview:
    ids: tuple[int, ...]
    truncated: bool  # more entries matched than one replay takes
    sample: tuple[DeadLetterRecord, ...]
    circuits: tuple[tuple[str, str], ...]  # (agent, state) of every agent it would call


async def select_entries(store: Store, selection: Selection) -> tuple[list[DeadLetterRecord], bool]:
    """The pending entries of a selection, oldest first, up to ``MAX_SELECTION``."""
    found: list[DeadLetterRecord] = []
    cursor: str | None = None
    while len(found) < MAX_SELECTION:
        page = await store.list_dead_letters(selection.query(500, cursor))
        found.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return found[:MAX_SELECTION], cursor is not None or len(found) > MAX_SELECTION


async def preview(
    store: Store, routing: RoutingSource, dispatcher: Dispatcher, selection: Selection
) -> Preview:
    """What a replay of ``selection`` would do, without doing it."""
    entries, truncated = await select_entries(store, selection)
    config = routing.current().config
    agents: set[str] = set()
    for entry in entries:
        if entry.agent is not None:
            agents.add(entry.agent)
        else:
            agents.update(config.table.route_for(entry.kind).agents)
    states = dispatcher.circuit_states()
    circuits = tuple((a, states.get(a, "closed")) for a in sorted(agents))
    return Preview(tuple(e.id for e in entries), truncated, tuple(entries[:SAMPLE]), circuits)


@dataclass(slots=True)
class ReplayRun:
    id: int
    key_name: str
    ids: tuple[int, ...]
    rate_per_s: float
    started_at: float = field(default_factory=time.time)
    state: str = "running"  # running, cancelling, cancelled, finished, failed
    done: ReplaySummary = field(default_factory=ReplaySummary)
    current: ReplaySummary = field(default_factory=ReplaySummary)
    task: asyncio.Task[None] | None = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def progress(self) -> ReplaySummary:
        return self.done.plus(self.current)

    @property
    def active(self) -> bool:
        return self.state in ("running", "cancelling")


class ReplayRuns:
    """This process's console replays; their tasks are owned here and cancelled by ``close``."""

    def __init__(self, keep: int = 20) -> None:
        self._runs: dict[int, ReplayRun] = {}
        self._ids = itertools.count(1)
        self._keep = keep

    def get(self, run_id: int) -> ReplayRun | None:
        return self._runs.get(run_id)

    def recent(self) -> list[ReplayRun]:
        return sorted(self._runs.values(), key=lambda r: r.id, reverse=True)

    def add(self, key_name: str, ids: tuple[int, ...], rate_per_s: float) -> ReplayRun:
        run = ReplayRun(next(self._ids), key_name, ids, rate_per_s)
        self._runs[run.id] = run
        for stale in [r for r in self.recent()[self._keep :] if not r.active]:
            del self._runs[stale.id]
        return run

    async def close(self) -> None:
        tasks = [r.task for r in self._runs.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(replayer: Replayer, run: ReplayRun) -> None:
    # Chunks of about two seconds of work: a cancel waits for one chunk at most.
    size = max(1, min(100, math.ceil(run.rate_per_s * 2)))
    pace_s = 1 / run.rate_per_s
    next_chunk = time.monotonic()
    try:
        for start in range(0, len(run.ids), size):
            with contextlib.suppress(TimeoutError):  # the pace between chunks, or a cancel
                await asyncio.wait_for(run.cancelled.wait(), next_chunk - time.monotonic())
            if run.cancelled.is_set():
                break
            chunk = run.ids[start : start + size]
            next_chunk = time.monotonic() + len(chunk) * pace_s
            run.current = ReplaySummary()
            summary = await replayer.replay(
                ids=chunk, pace_s=pace_s, on_entry=lambda s: setattr(run, "current", s)
            )
            run.done, run.current = run.done.plus(summary), ReplaySummary()
    except Exception as exc:
        run.state = "failed"
        get_logger("console").error("console.replay_failed", run=run.id, error=str(exc))
        return
    run.state = "cancelled" if run.cancelled.is_set() else "finished"
    get_logger("console").info(
        "console.replay_ended", run=run.id, state=run.state, **run.progress.as_dict()
    )


def start_replay(
    runs: ReplayRuns, replayer: Replayer, key_name: str, ids: tuple[int, ...], rate_per_s: float
) -> ReplayRun:
    """Start replaying ``ids`` at ``rate_per_s``; returns at once with the run to watch."""
    run = runs.add(key_name, ids, rate_per_s)
    run.task = asyncio.create_task(_run(replayer, run))
    return run


def cancel_replay(run: ReplayRun) -> None:
    if run.active:
        run.state = "cancelling"
        run.cancelled.set()
