"""``python -m bench.keep_alive_race`` against a real router: a client idle well under the
router's ``KEEP_ALIVE_S`` keeps its connections; one idle well over it sees each close in time
and reconnects. Either way nothing is reset (the race itself needs the two to meet)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.keep_alive_race import RaceCount, race
from tests.conftest import make_settings
from tests.support.server import RouterServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    with RouterServer(make_settings(database_url, routing_file, keep_alive_s=0.3)) as server:
        yield server


def test_idle_under_keep_alive_keeps_every_connection(router: RouterServer) -> None:
    count = asyncio.run(race(router.base_url, connections=5, idle_s=0.02, jitter_s=0, rounds=3))
    assert count == RaceCount(answered=15, seen_closed=0, reset=0)


def test_idle_over_keep_alive_sees_every_close_before_sending(router: RouterServer) -> None:
    count = asyncio.run(race(router.base_url, connections=5, idle_s=0.8, jitter_s=0, rounds=3))
    assert count == RaceCount(answered=15, seen_closed=10, reset=0)
