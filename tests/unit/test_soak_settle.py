"""Before each of the soak's phases the harness checkpoints the server, so a phase's first window
does not pay for what was dirtied before it; it says how long that took, or why it could not."""

from __future__ import annotations

import asyncio
import re

import pytest

from bench.environment import server_statement
from bench.soak import settle
from tests.conftest import PG_ADMIN

REQUESTED = "SELECT checkpoints_req FROM pg_stat_bgwriter"


@pytest.mark.postgres
def test_settle_runs_a_checkpoint_and_reports_its_time() -> None:
    before = int(asyncio.run(server_statement(PG_ADMIN, REQUESTED)))
    note = settle(PG_ADMIN, "between the phases")
    assert re.fullmatch(r"sync and CHECKPOINT between the phases: \d+\.\d s", note), note
    assert int(asyncio.run(server_statement(PG_ADMIN, REQUESTED))) > before


def test_a_server_that_cannot_checkpoint_is_a_note_not_a_failed_soak() -> None:
    note = settle("postgresql://postgres@127.0.0.1:1/none", "before the load")
    assert note.startswith("no CHECKPOINT before the load: ")
    assert "Error" in note
