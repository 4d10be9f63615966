"""Text an agent controls (a dead letter's error quotes an A2A error message or task id) is
storable whatever it holds: a NUL, which Postgres refuses in text, is stored as U+FFFD, as in
the JSON columns, and the same on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router_service.domain.outcome import AgentResult, DeadLetter, Outcome, Status
from router_service.service.records import ReplayAttemptRecord, ReplayResult
from tests.support.db import migrated_database, query
from tests.support.store import PLAN, open_store, signal

ERROR = "JSON-RPC error -32000: bad\x00thing"
STORED = "JSON-RPC error -32000: bad\ufffdthing"
PARKED_WITH_NUL = Outcome(
    Status.DEAD_LETTERED,
    None,
    (AgentResult("alpha", False, 200, 1, 1.0, error=ERROR),),
    (DeadLetter(None, f"alpha: {ERROR}", 1),),
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with migrated_database(request.param, tmp_path) as fresh:
        yield fresh


def park(url: str, log_id: str) -> None:
    async def scenario() -> None:
        async with open_store(url) as store:
            claim = await store.claim(signal(log_id), PLAN, "c" * 32, "owner", 30.0)
            assert claim.claimed_at is not None
            assert await store.record(log_id, claim.claimed_at, PLAN, PARKED_WITH_NUL, 1.0) == 1

    asyncio.run(scenario())


def test_a_nul_in_a_dead_letters_error_is_stored_as_u_fffd(url: str) -> None:
    park(url, "nul-1")
    [row] = query(url, "SELECT error FROM dead_letters")
    assert row == {"error": f"alpha: {STORED}"}
    [signal_row] = query(url, "SELECT status FROM signals")
    assert signal_row == {"status": "dead_lettered"}


def test_a_nul_in_a_failed_replays_error_is_stored_as_u_fffd(url: str) -> None:
    park(url, "nul-2")

    async def scenario() -> str:
        async with open_store(url) as store:
            [entry] = await store.claim_dead_letters(limit=None, ids=None, owner="r", lease_s=60)
            finished = await store.finish_replay(entry, ReplayResult(ok=False, error=ERROR), 5)
            await store.record_replay_attempt(
                ReplayAttemptRecord(
                    log_id="nul-2",
                    dead_letter_id=entry.id,
                    job_id=None,
                    agent="alpha",
                    trace_id="d" * 32,
                    outcome=finished,
                    error=ERROR,
                    created_at=datetime.now(UTC),
                )
            )
            return finished

    assert asyncio.run(scenario()) == "pending"
    [row] = query(url, "SELECT error, replay_count FROM dead_letters")
    assert row == {"error": STORED, "replay_count": 1}
    [attempt] = query(url, "SELECT error FROM replay_attempts")
    assert attempt == {"error": STORED}
