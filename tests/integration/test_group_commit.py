"""Postgres's hot path: outcomes of concurrent requests share a commit, and each caller returns
only once the commit holding its own row is done."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from router_service.domain.errors import StorageUnavailable
from router_service.domain.outcome import AgentResult, Outcome, Status
from router_service.observability.metrics import Metrics
from tests.support.db import migrated_database, query
from tests.support.ports import free_port
from tests.support.store import DELIVERED, PLAN, open_store, record_outcome, signal

LEASE_S = 30.0


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with migrated_database("postgres", tmp_path_factory.mktemp("group")) as fresh:
        yield fresh


def _calls(metrics: Metrics, operation: str) -> float:
    """Round trips of ``operation`` that went through."""
    labels = {"operation": operation, "outcome": "ok"}
    return metrics.registry.get_sample_value("db_call_latency_seconds_count", labels) or 0.0


def test_concurrent_outcomes_are_written_in_fewer_commits_than_requests(url: str) -> None:
    ids = [f"group-{n}" for n in range(40)]

    metrics = Metrics()

    async def scenario() -> None:
        async with open_store(url, metrics) as store:
            for log_id in ids:
                assert (await store.claim(signal(log_id), PLAN, "t" * 32, "me", LEASE_S)).won

            async def record_then_read(log_id: str) -> str:
                await record_outcome(store, log_id, PLAN, DELIVERED, 1.5)
                # Read back on a separate connection: the commit is done when record returns.
                [row] = await asyncio.to_thread(
                    query, url, "SELECT status FROM signals WHERE log_id = $1", log_id
                )
                return str(row["status"])

            statuses = await asyncio.gather(*(record_then_read(i) for i in ids))
            assert statuses == ["delivered"] * len(ids)

    asyncio.run(scenario())
    commits = _calls(metrics, "record")
    assert 1 <= commits < len(ids)
    rows = query(url, "SELECT latency_ms, response FROM signals WHERE log_id = $1", ids[7])
    assert [(r["latency_ms"], json.loads(r["response"])) for r in rows] == [(1.5, {"ok": True})]
    # The outcome ended every lease with its commit.
    assert query(url, "SELECT log_id FROM signal_leases") == []


def test_each_outcome_in_a_batch_keeps_its_own_values(url: str) -> None:
    partial = Outcome(
        Status.PARTIAL,
        None,
        (AgentResult("alpha", False, 500, 3, 9.0, error="HTTP 500"),),
        (),
    )

    async def scenario() -> None:
        async with open_store(url) as store:
            for log_id in ("mixed-ok", "mixed-partial"):
                assert (await store.claim(signal(log_id), PLAN, "t" * 32, "me", LEASE_S)).won
            await asyncio.gather(
                record_outcome(store, "mixed-ok", PLAN, DELIVERED, 1.0),
                record_outcome(store, "mixed-partial", PLAN, partial, 9.0),
            )

    asyncio.run(scenario())
    rows = query(
        url,
        "SELECT log_id, status, latency_ms FROM signals WHERE log_id LIKE 'mixed-%' ORDER BY 1",
    )
    assert rows == [
        {"log_id": "mixed-ok", "status": "delivered", "latency_ms": 1.0},
        {"log_id": "mixed-partial", "status": "partial", "latency_ms": 9.0},
    ]


def test_a_final_outcome_is_never_overwritten_by_a_later_batch(url: str) -> None:
    async def scenario() -> None:
        async with open_store(url) as store:
            assert (await store.claim(signal("first-wins"), PLAN, "t" * 32, "me", LEASE_S)).won
            await record_outcome(store, "first-wins", PLAN, DELIVERED, 1.0)
            partial = Outcome(Status.PARTIAL, None, (), ())
            await record_outcome(store, "first-wins", PLAN, partial, 2.0)

    asyncio.run(scenario())
    [row] = query(url, "SELECT status, latency_ms FROM signals WHERE log_id = 'first-wins'")
    assert row == {"status": "delivered", "latency_ms": 1.0}


CLAIMED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_every_waiter_of_a_failed_batch_gets_storage_unavailable_quickly() -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"

    async def scenario() -> list[BaseException | None]:
        async with open_store(dead) as store:
            started = asyncio.get_running_loop().time()
            results = await asyncio.gather(
                *(store.record(f"x-{n}", CLAIMED_AT, PLAN, DELIVERED, 1.0) for n in range(5)),
                return_exceptions=True,
            )
            assert asyncio.get_running_loop().time() - started < 5
            return list(results)  # type: ignore[arg-type]

    results = asyncio.run(scenario())
    assert all(isinstance(r, StorageUnavailable) for r in results), results


def test_concurrent_claims_share_round_trips_and_each_keeps_its_own_row(url: str) -> None:
    ids = [f"claims-{n}" for n in range(40)]
    metrics = Metrics()

    async def scenario() -> list[bool]:
        async with open_store(url, metrics) as store:
            claims = await asyncio.gather(
                *(
                    store.claim(signal(i, sender_id=f"s-{i}"), PLAN, i[-2:] * 16, "me", 30)
                    for i in ids
                )
            )
            return [c.won for c in claims]

    assert asyncio.run(scenario()) == [True] * len(ids)
    assert 1 <= _calls(metrics, "claim") < len(ids)
    rows = query(
        url, "SELECT log_id, sender_id, trace_id, status FROM signals WHERE log_id LIKE 'claims-%'"
    )
    assert sorted(
        (r["log_id"], r["sender_id"], r["trace_id"], r["status"]) for r in rows
    ) == sorted((i, f"s-{i}", i[-2:] * 16, "in_progress") for i in ids)
    leases = query(url, "SELECT count(*) AS n FROM signal_leases WHERE log_id LIKE 'claims-%'")
    assert leases == [{"n": len(ids)}]


@contextmanager
def refusing(url: str, event: str, log_id: str) -> Iterator[None]:
    """A trigger that makes Postgres refuse ``event`` (INSERT or UPDATE) of one log row."""
    query(
        url,
        "CREATE OR REPLACE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
    )
    query(
        url,
        f"CREATE TRIGGER refuse_row BEFORE {event} ON signals FOR EACH ROW "
        f"WHEN (NEW.log_id = '{log_id}') EXECUTE FUNCTION refuse_row()",
    )
    try:
        yield
    finally:
        query(url, "DROP TRIGGER refuse_row ON signals")


def test_a_claim_refused_in_a_batch_fails_only_its_own_request(url: str) -> None:
    # The first claim is written alone; the other five queue meanwhile and go as one batch,
    # which the refused row fails: each is then written alone.
    ids = ["alone-first", "batch-a", "batch-poison", "batch-b", "batch-c", "batch-d"]

    async def scenario() -> list[object]:
        async with open_store(url) as store:
            return await asyncio.gather(
                *(store.claim(signal(i), PLAN, "p" * 32, "me", LEASE_S) for i in ids),
                return_exceptions=True,
            )

    with refusing(url, "INSERT", "batch-poison"):
        results = asyncio.run(scenario())
    assert isinstance(results[2], StorageUnavailable), results
    assert [getattr(r, "won", None) for r in results] == [True, True, None, True, True, True]
    rows = query(url, "SELECT log_id FROM idempotency_keys WHERE log_id = ANY($1)", ids)
    assert sorted(r["log_id"] for r in rows) == sorted(i for i in ids if i != "batch-poison")


def test_an_outcome_refused_in_a_batch_fails_only_its_own_request(url: str) -> None:
    ids = ["out-first", "out-a", "out-poison", "out-b"]

    async def claim_all() -> dict[str, datetime]:
        async with open_store(url) as store:
            claimed_at = {}
            for log_id in ids:
                assert (await store.claim(signal(log_id), PLAN, "o" * 32, "me", LEASE_S)).won
                row = await store.get(log_id)
                assert row is not None
                claimed_at[log_id] = row.created_at
            return claimed_at

    async def record_all(claimed_at: dict[str, datetime]) -> list[object]:
        async with open_store(url) as store:
            # As with claims: the first alone, the other three one batch, refused, then alone.
            return await asyncio.gather(
                *(store.record(i, claimed_at[i], PLAN, DELIVERED, 2.0) for i in ids),
                return_exceptions=True,
            )

    claimed_at = asyncio.run(claim_all())
    with refusing(url, "UPDATE", "out-poison"):
        results = asyncio.run(record_all(claimed_at))
    assert isinstance(results[2], StorageUnavailable), results
    assert [results[0], results[1], results[3]] == [0, 0, 0]
    rows = query(url, "SELECT log_id, status FROM signals WHERE log_id = ANY($1) ORDER BY 1", ids)
    assert [(r["log_id"], r["status"]) for r in rows] == [
        ("out-a", "delivered"),
        ("out-b", "delivered"),
        ("out-first", "delivered"),
        ("out-poison", "in_progress"),
    ]
