"""The soak's disk probe: each window's slowest flush, a stall still running counted for as
long as it has lasted, the file gone afterwards, and the probe only where the WAL's disk is."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import pytest

from bench.disk_probe import WAL_DIRECTORY, FlushProbe, probe_path
from bench.environment import server_statement
from tests.conftest import PG_ADMIN


def test_each_take_reports_the_slowest_flush_since_the_last_and_starts_again(
    tmp_path: Path,
) -> None:
    probe = FlushProbe(tmp_path / "probe")
    probe.start(thread=False)
    try:
        assert probe.take() is None  # nothing timed yet: no figure, not a zero
        probe.flush_once()
        probe.flush_once()
        slowest = probe.take()
        assert slowest is not None
        assert slowest > 0
        assert probe.take() is None
        assert (tmp_path / "probe").stat().st_size == 8192
    finally:
        probe.stop()
    assert not (tmp_path / "probe").exists()


def test_a_flush_still_running_at_the_end_of_a_window_counts_for_as_long_as_it_has_run(
    tmp_path: Path,
) -> None:
    probe = FlushProbe(tmp_path / "probe")
    probe._began = time.perf_counter() - 0.3  # a stall that began 300 ms ago, not over
    slowest = probe.take()
    assert slowest is not None
    assert slowest >= 300


def test_the_thread_flushes_until_stopped(tmp_path: Path) -> None:
    probe = FlushProbe(tmp_path / "probe", interval_s=0.001)
    probe.start()
    thread = probe._thread
    assert thread is not None
    assert thread.is_alive()
    probe.stop()
    assert not thread.is_alive()
    assert not (tmp_path / "probe").exists()


@pytest.mark.postgres
def test_the_probe_writes_in_the_soaks_directory_only_on_the_wals_filesystem(
    tmp_path: Path,
) -> None:
    wal = os.path.realpath(asyncio.run(server_statement(PG_ADMIN, WAL_DIRECTORY)))
    path, how = probe_path(PG_ADMIN, tmp_path)
    if os.stat(wal).st_dev == os.stat(tmp_path).st_dev:
        assert path == tmp_path / "flush-probe"
        assert "flushed every 20 ms" in how
    else:
        assert path is None
    with tempfile.TemporaryDirectory(dir="/dev/shm") as memory:  # tmpfs: never the WAL's disk
        path, how = probe_path(PG_ADMIN, Path(memory))
        assert path is None
        assert how == "the soak's directory is on another filesystem than Postgres's WAL"


def test_no_probe_when_postgres_cannot_say_where_its_wal_is(tmp_path: Path) -> None:
    path, how = probe_path("postgresql://postgres@127.0.0.1:1/none", tmp_path)
    assert path is None
    assert "not readable" in how
