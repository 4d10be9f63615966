"""Where a sweep of expired leases starts its walk (Postgres).

Every outcome deletes its signal's lease, and the leases' expiry index keeps the entry of each
deleted lease until (auto)vacuum removes it. New leases expire later than every old one, so the
dead entries pile up at the low end of the index, the end a sweep (``expires_at < now``) starts
from. Walked from the bottom, every sweep reads every lease the log has ever deleted since the
last vacuum: with autovacuum off or behind, millions of entries every ``SWEEP_INTERVAL_S``
(measured with ``python -m bench.log_size``: half of the blocks a grown log reads a signal).

So a sweep starts at a floor: the cutoff of the last sweep that took everything it found, less a
margin. What expired below the floor was there for the earlier sweep to take; the margin covers
what it could not see yet (a claim committed late, a lease skipped while an outcome held it whose
transaction then rolled back, another replica's clock running behind ours). Whatever still slips
past is found by a full walk from the bottom, at the first sweep of the process and then every
``FULL_WALK_EVERY_S``: the floor bounds the cost, the full walk keeps recovery complete.

SQLite needs none of this: its B-tree drops a deleted row's entries at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

# How far below the last sweep's cutoff the next one looks (plus one lease).
MARGIN_S = 60.0
# How often a sweep walks the whole index from the bottom instead.
FULL_WALK_EVERY_S = 600.0
# The full walk's floor: asyncpg sends the naive ``datetime.min`` as ``-infinity``.
WALK_FROM_BOTTOM = datetime.min


class SweepFloor:
    """The lowest expiry the next sweep reads; ``None`` when a full walk is due."""

    def __init__(
        self,
        *,
        margin_s: float = MARGIN_S,
        full_walk_every_s: float = FULL_WALK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._margin_s = margin_s
        self._full_walk_every_s = full_walk_every_s
        self._clock = clock
        self._floor: datetime | None = None
        self._last_full_walk: float | None = None

    def lower(self) -> datetime | None:
        """Where the next sweep starts; ``None``: from the bottom."""
        if self._last_full_walk is None:
            return None
        if self._clock() - self._last_full_walk >= self._full_walk_every_s:
            return None
        return self._floor

    def swept(self, *, cutoff: datetime, lease_s: float, picked: int, limit: int,
              full: bool) -> None:  # fmt: skip
        """A sweep up to ``cutoff`` took ``picked`` leases of at most ``limit``. A full batch may
        have left expired leases behind, so the floor stays where it was until one is not."""
        if picked >= limit:
            return
        self._floor = cutoff - timedelta(seconds=self._margin_s + lease_s)
        if full:
            self._last_full_walk = self._clock()
