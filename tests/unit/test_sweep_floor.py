"""Where a sweep of expired leases starts (``adapters/db/pg_sweep.py``): from the bottom at first
and every full-walk period, otherwise a margin below the last complete sweep's cutoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from router_service.adapters.db.pg_sweep import SweepFloor
from tests.support.fake_clock import FakeClock

CUTOFF = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
LEASE_S = 30.0


def test_the_first_sweep_walks_from_the_bottom_and_the_next_from_the_floor() -> None:
    floor = SweepFloor(margin_s=60, full_walk_every_s=600, clock=FakeClock())
    assert floor.lower() is None
    floor.swept(cutoff=CUTOFF, lease_s=LEASE_S, picked=3, limit=10, full=True)
    assert floor.lower() == CUTOFF - timedelta(seconds=90)


def test_a_full_batch_keeps_the_floor_where_it_was() -> None:
    floor = SweepFloor(margin_s=60, full_walk_every_s=600, clock=FakeClock())
    floor.swept(cutoff=CUTOFF, lease_s=LEASE_S, picked=10, limit=10, full=True)
    assert floor.lower() is None  # the full walk did not finish: it goes on from the bottom
    floor.swept(cutoff=CUTOFF, lease_s=LEASE_S, picked=0, limit=10, full=True)
    later = CUTOFF + timedelta(seconds=5)
    floor.swept(cutoff=later, lease_s=LEASE_S, picked=10, limit=10, full=False)
    assert floor.lower() == CUTOFF - timedelta(seconds=90)
    floor.swept(cutoff=later, lease_s=LEASE_S, picked=9, limit=10, full=False)
    assert floor.lower() == later - timedelta(seconds=90)


def test_a_full_walk_comes_back_every_period() -> None:
    clock = FakeClock()
    floor = SweepFloor(margin_s=60, full_walk_every_s=600, clock=clock)
    floor.swept(cutoff=CUTOFF, lease_s=LEASE_S, picked=0, limit=10, full=True)
    clock.advance(599)
    assert floor.lower() is not None
    clock.advance(1)
    assert floor.lower() is None
    floor.swept(cutoff=CUTOFF, lease_s=LEASE_S, picked=0, limit=10, full=True)
    assert floor.lower() is not None
