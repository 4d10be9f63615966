"""The claim takes a key in ``idempotency_keys`` and the log row together; prune takes both away.

Store-level, on both backends, each module run on a database of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from router_service.domain.errors import StorageError
from router_service.domain.outcome import Outcome, Status
from router_service.service.records import Claim
from tests.support.db import migrated_database, query
from tests.support.store import (
    DELIVERED,
    PARKED,
    PLAN,
    backdate,
    keys,
    open_store,
    record_outcome,
    signal,
)

LEASE_S = 30.0


@pytest.fixture(scope="module")
def url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with migrated_database(backend, tmp_path_factory.mktemp("keys")) as fresh:
        yield fresh


async def _claim(url: str, log_id: str, trace_id: str = "t" * 32) -> Claim:
    async with open_store(url) as store:
        return await store.claim(signal(log_id), PLAN, trace_id, "owner", LEASE_S)


def test_a_won_claim_holds_the_key_and_the_log_row(url: str) -> None:
    assert asyncio.run(_claim(url, "k-won")).won
    [key] = query(url, "SELECT created_at FROM idempotency_keys WHERE log_id = $1", "k-won")
    [row] = query(url, "SELECT created_at, status FROM signals WHERE log_id = $1", "k-won")
    assert key["created_at"] == row["created_at"]
    assert row["status"] == "in_progress"


def test_a_repeated_claim_gets_the_stored_record_and_writes_nothing(url: str) -> None:
    async def scenario() -> Claim:
        async with open_store(url) as store:
            assert (await store.claim(signal("k-dup"), PLAN, "a" * 32, "owner", LEASE_S)).won
            await record_outcome(store, "k-dup", PLAN, DELIVERED, 1.0)
            return await store.claim(signal("k-dup"), PLAN, "b" * 32, "owner", LEASE_S)

    again = asyncio.run(scenario())
    assert not again.won
    assert again.record is not None
    assert again.record.log_id == "k-dup"
    assert again.record.status is Status.DELIVERED
    assert again.record.response == {"ok": True}
    assert again.record.trace_id == "a" * 32
    rows = query(url, "SELECT count(*) AS n FROM signals WHERE log_id = $1", "k-dup")
    assert rows == [{"n": 1}]


def test_concurrent_claims_of_one_key_have_one_winner(url: str) -> None:
    async def scenario() -> list[Claim]:
        async with open_store(url) as store:
            return await asyncio.gather(
                *(
                    store.claim(signal("k-race"), PLAN, f"{i:032d}", f"owner-{i}", LEASE_S)
                    for i in range(12)
                )
            )

    claims = asyncio.run(scenario())
    assert sum(c.won for c in claims) == 1
    assert all(c.record is not None and c.record.log_id == "k-race" for c in claims if not c.won)


def _refuse_log_rows_of_k_atomic(url: str) -> None:
    """A trigger that makes the log row's insert fail after the key's went through."""
    if url.startswith("sqlite"):
        query(
            url,
            "CREATE TRIGGER refuse BEFORE INSERT ON signals WHEN NEW.log_id = 'k-atomic' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        return
    query(
        url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
    )
    query(
        url,
        "CREATE TRIGGER refuse BEFORE INSERT ON signals FOR EACH ROW "
        "WHEN (NEW.log_id = 'k-atomic') EXECUTE FUNCTION refuse()",
    )


def _stop_refusing(url: str) -> None:
    if url.startswith("sqlite"):
        query(url, "DROP TRIGGER refuse")
        return
    query(url, "DROP TRIGGER refuse ON signals")
    query(url, "DROP FUNCTION refuse()")


def test_a_log_row_that_cannot_be_written_leaves_no_key_behind(url: str) -> None:
    _refuse_log_rows_of_k_atomic(url)
    try:
        with pytest.raises(StorageError):
            asyncio.run(_claim(url, "k-atomic"))
        assert "k-atomic" not in keys(url)
    finally:
        _stop_refusing(url)
    assert asyncio.run(_claim(url, "k-atomic")).won


async def _claim_and_record(url: str, outcomes: dict[str, Outcome | None]) -> None:
    async with open_store(url) as store:
        for log_id, outcome in outcomes.items():
            assert (await store.claim(signal(log_id), PLAN, "c" * 32, "owner", LEASE_S)).won
            if outcome is not None:
                await record_outcome(store, log_id, PLAN, outcome, 1.0)


async def _prune(url: str, older_than: datetime) -> int:
    async with open_store(url) as store:
        return (await store.prune(older_than)).deleted


def test_prune_takes_the_keys_of_pruned_signals_and_keeps_the_others(url: str) -> None:
    outcomes = {"k-done": DELIVERED, "k-parked": PARKED, "k-flying": None}
    asyncio.run(_claim_and_record(url, outcomes))
    for log_id in outcomes:
        backdate(url, log_id, datetime(2001, 1, 1, tzinfo=UTC))
    assert asyncio.run(_prune(url, datetime(2001, 1, 2, tzinfo=UTC))) == 1
    left = keys(url)
    assert "k-done" not in left
    assert {"k-parked", "k-flying"} <= left  # a pending dead letter, a signal in flight
    letters = query(url, "SELECT log_id FROM dead_letters WHERE log_id = $1", "k-parked")
    assert letters == [{"log_id": "k-parked"}]


def test_a_signal_pruned_with_its_key_is_claimed_anew(url: str) -> None:
    """Documented: the deduplication window is the retention period."""
    asyncio.run(_claim_and_record(url, {"k-again": DELIVERED}))
    backdate(url, "k-again", datetime(2002, 1, 1, tzinfo=UTC))
    assert asyncio.run(_prune(url, datetime(2002, 1, 2, tzinfo=UTC))) == 1
    assert "k-again" not in keys(url)
    assert asyncio.run(_claim(url, "k-again", trace_id="e" * 32)).won
    [row] = query(url, "SELECT status, trace_id FROM signals WHERE log_id = $1", "k-again")
    assert row == {"status": "in_progress", "trace_id": "e" * 32}
    assert "k-again" in keys(url)
