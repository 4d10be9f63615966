"""The dead-letter backlog gauge (``dlq_backlog``), counted from the queue itself, never on a
request's path.

Counting the pending dead letters is a statement whose cost grows with the queue (about 55 ms
at a million on Postgres). The intake used to run it after every signal it dead-lettered: a
flood of failing signals then ran one count each (throughput fell from 895 to 48 a second
with a million pending), and a count that failed (every connection busy) answered 503 for a
signal already recorded, which a client resending without a ``log_id`` would send twice.

Now a count runs every ``DLQ_BACKLOG_REFRESH_S`` (other replicas and workers change the queue
too), and soon after this process dead-letters a signal (``changed``), one at a time and at
most once per ``MIN_INTERVAL_S``; a failed count leaves the gauge as it was. A replay and a
sweep count at their end themselves (``recount_backlog``): they are background work already.
"""

from __future__ import annotations

import asyncio
import contextlib

from router_service.domain.errors import StorageError
from router_service.service.ports import Events, Store

MIN_INTERVAL_S = 1.0


async def recount_backlog(store: Store, events: Events) -> None:
    """The gauge from the queue. A failed count leaves the gauge as it was: the work before it
    is done, and the next count comes."""
    with contextlib.suppress(StorageError):
        events.dlq_backlog(await store.dlq_backlog())


class BacklogGauge:
    def __init__(
        self, store: Store, events: Events, refresh_s: float, min_interval_s: float = MIN_INTERVAL_S
    ) -> None:
        self._store = store
        self._events = events
        self._refresh_s = refresh_s
        self._min_interval_s = min_interval_s
        self._asked = asyncio.Event()

    def changed(self) -> None:
        """The queue grew here: count it soon (returns at once)."""
        self._asked.set()

    async def run(self) -> None:
        """Count now, then on every ``changed`` or after ``refresh_s``; until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._asked.clear()  # a change during the count asks for the next one
            started = loop.time()
            await recount_backlog(self._store, self._events)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_s):
                    await self._asked.wait()
            await asyncio.sleep(max(0.0, started + self._min_interval_s - loop.time()))
