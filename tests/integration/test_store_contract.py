"""The store contract: every method of the ``Store`` port, the same assertions on Postgres
(asyncpg, one pool) and SQLite (SQLAlchemy). Each test gets a fresh database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from router_service.adapters.db.page_size import MAX_PAGE_BYTES
from router_service.adapters.db.revision import SCHEMA_HEAD
from router_service.domain.outcome import AgentResult, DeadLetter, Outcome, Status
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.domain.signal import Signal
from router_service.service.ports import Store
from router_service.service.records import (
    SUPERSEDED,
    DeadLetterQuery,
    DeadLetterRecord,
    LogQuery,
    Pruned,
    PrunePosition,
    ReplayResult,
)
from tests.support.db import migrated_database, query
from tests.support.store import DELIVERED, PARKED, PLAN, backdate, keys, open_store, signal

LEASE_S = 30.0
FANOUT = Plan(
    kind="fanout",
    rule="route-fanout",
    mode=Mode.AGGREGATE,
    agents=(AgentSpec("alpha", "http://127.0.0.1:9/a"), AgentSpec("beta", "http://127.0.0.1:9/b")),
)
PARTIAL = Outcome(
    Status.PARTIAL,
    {"alpha": {"ok": True}},
    (
        AgentResult("alpha", True, 200, 1, 1.0, response={"ok": True}),
        AgentResult("beta", False, 503, 3, 2.0, error="HTTP 503"),
    ),
    (DeadLetter("beta", "beta: HTTP 503", 3),),
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with migrated_database(request.param, tmp_path) as fresh:
        yield fresh


def run(url: str, scenario: Callable[[Store], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with open_store(url) as store:
            return await scenario(store)

    return asyncio.run(go())


async def claimed(
    store: Store, log_id: str, plan: Plan = PLAN, lease_s: float = LEASE_S
) -> datetime:
    claim = await store.claim(signal(log_id), plan, "c" * 32, "owner-a", lease_s)
    assert claim.won
    assert claim.claimed_at is not None
    return claim.claimed_at


def test_ping_and_schema_revision(url: str) -> None:
    async def scenario(store: Store) -> tuple[float, str | None]:
        return await store.ping(), await store.schema_revision()

    latency_ms, revision = run(url, scenario)
    assert latency_ms >= 0
    assert revision == SCHEMA_HEAD


def test_maintenance_warnings_say_when_the_server_vacuums_nothing(url: str) -> None:
    """Postgres: a warning exactly when autovacuum (or the statistics it needs) is off on the
    server the test runs on; SQLite reuses freed pages itself."""
    warnings = run(url, lambda store: store.maintenance_warnings())
    if url.startswith("sqlite"):
        assert warnings == []
        return
    [settings] = query(
        url,
        "SELECT current_setting('autovacuum') AS autovacuum, "
        "current_setting('track_counts') AS track_counts",
    )
    if settings == {"autovacuum": "on", "track_counts": "on"}:
        assert warnings == []
    else:
        [warning] = warnings
        assert "signal_leases" in warning
        assert all(name in warning for name, value in settings.items() if value != "on")


def test_claim_get_and_record_round_trip(url: str) -> None:
    async def scenario(store: Store) -> tuple[Any, Any, Any]:
        at = await claimed(store, "c-1")
        in_flight = await store.get("c-1")
        await store.record("c-1", at, PLAN, DELIVERED, 4.5)
        return in_flight, await store.get("c-1"), await store.get("c-missing")

    in_flight, done, missing = run(url, scenario)
    assert in_flight.status is Status.IN_PROGRESS
    assert in_flight.routed_agents == ["alpha"]
    assert in_flight.payload == {"route": "one", "id": "c-1"}
    assert done.status is Status.DELIVERED
    assert done.response == {"ok": True}
    assert done.results[0]["agent"] == "alpha"
    assert done.latency_ms == 4.5
    assert missing is None
    assert query(url, "SELECT log_id FROM signal_leases") == []


def test_a_duplicate_claim_returns_the_stored_row(url: str) -> None:
    async def scenario(store: Store) -> Any:
        at = await claimed(store, "c-dup")
        await store.record("c-dup", at, PLAN, DELIVERED, 1.0)
        return await store.claim(signal("c-dup"), PLAN, "d" * 32, "owner-b", LEASE_S)

    again = run(url, scenario)
    assert not again.won
    assert again.record.status is Status.DELIVERED


def test_the_first_outcome_wins_and_dead_letters_come_with_it(url: str) -> None:
    async def scenario(store: Store) -> tuple[int, int, Any]:
        at = await claimed(store, "c-parked", FANOUT)
        first = await store.record("c-parked", at, FANOUT, PARTIAL, 2.0)
        second = await store.record("c-parked", at, FANOUT, PARKED, 3.0)
        return first, second, await store.get("c-parked")

    first, second, row = run(url, scenario)
    assert (first, second) == (1, None)  # None: not written, the caller answers the stored one
    assert row.status is Status.PARTIAL
    assert row.latency_ms == 2.0


def test_outcomes_written_together_each_say_whether_theirs_was_written(url: str) -> None:
    """Outcomes without dead letters are group-committed: each must still learn whether its
    signal was in progress or finished already by another owner (whose outcome stands)."""

    async def scenario(store: Store) -> tuple[list[int | None], list[int | None], list[Status]]:
        ids = [f"g-{i}" for i in range(6)]
        at = {log_id: await claimed(store, log_id) for log_id in ids}
        theirs = [await store.record(i, at[i], PLAN, PARKED, 1.0) for i in ids[::2]]
        ours = await asyncio.gather(*(store.record(i, at[i], PLAN, DELIVERED, 2.0) for i in ids))
        rows = [await store.get(i) for i in ids]
        return theirs, list(ours), [row.status for row in rows if row is not None]

    theirs, ours, statuses = run(url, scenario)
    assert theirs == [1, 1, 1]
    assert ours == [None, 0, None, 0, None, 0]
    assert statuses == [Status.DEAD_LETTERED, Status.DELIVERED] * 3


def test_list_logs_filters_and_pages(url: str) -> None:
    async def scenario(store: Store) -> tuple[list[list[str]], list[str], list[str]]:
        for n in range(5):
            at = await claimed(store, f"l-{n}")
            await store.record(f"l-{n}", at, PLAN, DELIVERED if n % 2 else PARKED, 1.0)
        pages: list[list[str]] = []
        cursor = None
        while True:
            page = await store.list_logs(LogQuery(limit=2, cursor=cursor))
            pages.append([r.log_id for r in page.items])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        delivered = await store.list_logs(LogQuery(status="delivered"))
        since = await store.list_logs(
            LogQuery(sender_id="store-test", since=datetime.now(UTC) - timedelta(minutes=5))
        )
        return pages, [r.log_id for r in delivered.items], [r.log_id for r in since.items]

    pages, delivered, since = run(url, scenario)
    assert pages == [["l-4", "l-3"], ["l-2", "l-1"], ["l-0"]]
    assert delivered == ["l-3", "l-1"]
    assert since == ["l-4", "l-3", "l-2", "l-1", "l-0"]


def test_a_page_holds_what_fits_in_max_page_bytes_and_the_rest_follows(url: str) -> None:
    """Rows of a third of the budget each: two a page whatever the limit, none lost or twice
    (500 rows of 250 kB payloads made one 125 MB answer)."""
    third = "x" * (MAX_PAGE_BYTES // 3)

    async def scenario(store: Store) -> tuple[list[list[str]], list[list[str]]]:
        for n in range(5):
            claim = await store.claim(signal(f"big-{n}", text=third), PLAN, "c" * 32, "o", LEASE_S)
            assert claim.claimed_at is not None
            await store.record(f"big-{n}", claim.claimed_at, PLAN, PARKED, 1.0)
        logs: list[list[str]] = []
        cursor = None
        while True:
            page = await store.list_logs(LogQuery(limit=50, cursor=cursor))
            logs.append([r.log_id for r in page.items])
            if (cursor := page.next_cursor) is None:
                break
        letters: list[list[str]] = []
        while True:
            dead = await store.list_dead_letters(DeadLetterQuery(limit=50, cursor=cursor))
            letters.append([e.log_id for e in dead.items])
            if (cursor := dead.next_cursor) is None:
                break
        return logs, letters

    logs, letters = run(url, scenario)
    assert logs == [["big-4", "big-3"], ["big-2", "big-1"], ["big-0"]]
    assert letters == [["big-0", "big-1"], ["big-2", "big-3"], ["big-4"]]


def test_metadata_and_answers_count_at_the_size_they_were_written(url: str) -> None:
    """Repeated text compresses: Postgres stores 255 kB of it in 3 kB, and a page measured by
    its stored size built a 128 MB answer. Each row here holds a seventh of the budget in its
    metadata and a seventh in its agent's answer (stored twice: the response and the results)."""
    seventh = MAX_PAGE_BYTES // 7
    answer = {"text": "b" * seventh}
    parked = Outcome(
        Status.DEAD_LETTERED, answer, (AgentResult("alpha", False, 503, 1, 1.0, response=answer),),
        (DeadLetter(None, "alpha: HTTP 503", 1),),
    )  # fmt: skip

    async def scenario(store: Store) -> tuple[list[int], list[int]]:
        for n in range(6):
            sent = Signal.create(
                sender_id="compressible",
                payload={"route": "one", "n": n},
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                metadata={"text": "a" * seventh},
                log_id=f"packed-{n}",
            )
            claim = await store.claim(sent, PLAN, "c" * 32, "o", LEASE_S)
            assert claim.claimed_at is not None
            await store.record(sent.log_id, claim.claimed_at, PLAN, parked, 1.0)
        logs: list[int] = []
        cursor = None
        while True:
            page = await store.list_logs(LogQuery(limit=50, cursor=cursor))
            logs.append(len(page.items))
            if (cursor := page.next_cursor) is None:
                break
        letters: list[int] = []
        while True:
            dead = await store.list_dead_letters(DeadLetterQuery(limit=50, cursor=cursor))
            letters.append(len(dead.items))
            if (cursor := dead.next_cursor) is None:
                break
        return logs, letters

    logs, letters = run(url, scenario)
    assert logs == [2, 2, 2]  # three sevenths of the budget a row
    assert sum(letters) == 6


def test_dead_letters_list_claim_replay_and_backlog(url: str) -> None:
    async def scenario(store: Store) -> dict[str, Any]:
        at = await claimed(store, "d-1", FANOUT)
        await store.record("d-1", at, FANOUT, PARTIAL, 2.0)
        listed = await store.list_dead_letters(DeadLetterQuery(agent="beta"))
        backlog_before = await store.dlq_backlog()
        [entry] = await store.claim_dead_letters(limit=10, ids=None, owner="r1", lease_s=60)
        held = await store.claim_dead_letters(limit=10, ids=None, owner="r2", lease_s=60)
        ok = ReplayResult(
            ok=True,
            results=[{"agent": "beta", "ok": True, "attempts": 1}],
            response={"took": True},  # beta's own answer
        )
        status = await store.finish_replay(entry, ok, max_replays=3)
        return {
            "listed": [(e.log_id, e.agent, e.status) for e in listed.items],
            "entry": (entry.sender_id, entry.trace_id, entry.payload),
            "held": held,
            "status": status,
            "backlog": (backlog_before, await store.dlq_backlog()),
            "signal": await store.get("d-1"),
        }

    got = run(url, scenario)
    assert got["listed"] == [("d-1", "beta", "pending")]
    assert got["entry"] == ("store-test", "c" * 32, {"route": "one", "id": "d-1"})
    assert got["held"] == []  # one replayer holds it
    assert got["status"] == "replayed"
    assert got["backlog"] == (1, 0)
    assert got["signal"].status is Status.DELIVERED
    assert got["signal"].response == {"alpha": {"ok": True}, "beta": {"took": True}}


def test_failed_and_deferred_replays(url: str) -> None:
    async def scenario(store: Store) -> list[str]:
        at = await claimed(store, "d-2")
        await store.record("d-2", at, PLAN, PARKED, 1.0)
        statuses = []
        for result in (
            ReplayResult(ok=False, error="still 503"),
            ReplayResult(ok=False, attempted=False),
            ReplayResult(ok=False, error="still 503"),
        ):
            [entry] = await store.claim_dead_letters(limit=None, ids=None, owner="r", lease_s=60)
            statuses.append(await store.finish_replay(entry, result, max_replays=2))
        return statuses

    assert run(url, scenario) == ["pending", "pending", "exhausted"]
    [row] = query(url, "SELECT replay_count, error, status FROM dead_letters")
    assert row == {"replay_count": 2, "error": "still 503", "status": "exhausted"}


def test_a_replay_whose_claim_ran_out_and_was_taken_leaves_the_entry_to_the_holder(
    url: str,
) -> None:
    """A replayer frozen past its claim's lease, another claim taken meanwhile (the same
    process's owner: the claim's expiry tells them apart). The late failure or deferral wrote
    over the holder's claim; the holder's failure then put a replayed entry back to pending."""

    failed = ReplayResult(ok=False, error="late 503")

    async def late_ends(store: Store) -> tuple[DeadLetterRecord, DeadLetterRecord, list[str]]:
        at = await claimed(store, "d-late")
        await store.record("d-late", at, PLAN, PARKED, 1.0)
        [late] = await store.claim_dead_letters(limit=None, ids=None, owner="r", lease_s=0.0)
        [holder] = await store.claim_dead_letters(limit=None, ids=None, owner="r", lease_s=60)
        assert late.claim_expires_at is not None
        assert holder.claim_expires_at is not None
        assert (late.claimed_by, holder.claimed_by) == ("r", "r")
        ends = [
            await store.finish_replay(late, failed, max_replays=5),
            await store.finish_replay(late, ReplayResult(ok=False, attempted=False), 5),
        ]
        return late, holder, ends

    late, holder, ends = run(url, late_ends)
    assert ends == [SUPERSEDED, SUPERSEDED]
    [row] = query(url, "SELECT replay_count, claimed_by, error FROM dead_letters")
    assert row == {"replay_count": 0, "claimed_by": "r", "error": "alpha: HTTP 400"}, row

    async def success_then_holder(store: Store) -> list[str]:
        took = ReplayResult(
            ok=True, results=[{"agent": "alpha", "ok": True, "attempts": 1}], response={"a": 1}
        )
        return [
            await store.finish_replay(late, took, max_replays=5),  # the agent has it
            await store.finish_replay(holder, failed, max_replays=5),
        ]

    assert run(url, success_then_holder) == ["replayed", SUPERSEDED]
    [row] = query(url, "SELECT status, replay_count, claimed_by FROM dead_letters")
    assert row == {"status": "replayed", "replay_count": 1, "claimed_by": None}
    [signal_row] = query(url, "SELECT status FROM signals WHERE log_id = 'd-late'")
    assert signal_row["status"] == "delivered"


def test_due_only_and_ids_select_what_a_replayer_claims(url: str) -> None:
    async def scenario(store: Store) -> tuple[list[int], list[int], list[int]]:
        for log_id in ("d-a", "d-b"):
            at = await claimed(store, log_id)
            await store.record(log_id, at, PLAN, PARKED, 1.0)
        page = await store.list_dead_letters(DeadLetterQuery())
        first, second = (e.id for e in page.items)
        [entry] = await store.claim_dead_letters(limit=None, ids=[first], owner="r", lease_s=60)
        await store.finish_replay(entry, ReplayResult(ok=False, error="x"), 5, retry_in_s=300)
        due = await store.claim_dead_letters(
            limit=None, ids=None, owner="r", lease_s=60, due_only=True
        )
        after = await store.claim_dead_letters(
            limit=None, ids=None, owner="s", lease_s=60, after_id=second
        )
        return [first, second], [e.id for e in due], [e.id for e in after]

    ids, due, after = run(url, scenario)
    assert due == [ids[1]]  # the first backs off for 300 s
    assert after == []


def test_expired_leases_are_reclaimed_once_and_released_on_shutdown(url: str) -> None:
    async def scenario(store: Store) -> tuple[list[str], list[str], int, list[str]]:
        await claimed(store, "e-lapsed", lease_s=-1.0)
        await claimed(store, "e-alive")
        taken = [r.log_id for r in await store.reclaim_expired("sweeper-1", LEASE_S, 10)]
        again = [r.log_id for r in await store.reclaim_expired("sweeper-2", LEASE_S, 10)]
        released = await store.release_leases("owner-a")
        after_release = [r.log_id for r in await store.reclaim_expired("sweeper-2", LEASE_S, 10)]
        return taken, again, released, after_release

    taken, again, released, after_release = run(url, scenario)
    assert taken == ["e-lapsed"]
    assert again == []
    assert released == 1  # e-alive; e-lapsed now belongs to sweeper-1
    assert after_release == ["e-alive"]


def test_prune_goes_on_from_where_its_last_batch_stopped(url: str) -> None:
    """Each batch starts after the previous one's last signal: the signals a batch had to keep
    are not read again (a log of 200,000 kept signals cost every batch of 1,000 about 375 ms).
    A signal before the position that became prunable meanwhile waits for the next run."""
    kept, done = ("w1-parked", "w3-parked"), ("w2-done", "w4-done", "w5-done")

    async def write(store: Store) -> None:
        for log_id in sorted(kept + done):
            at = await claimed(store, log_id)
            await store.record(log_id, at, PLAN, PARKED if log_id in kept else DELIVERED, 1.0)

    run(url, write)
    for minute, log_id in enumerate(sorted(kept + done)):
        backdate(url, log_id, datetime(2001, 1, 1, 0, minute, tzinfo=UTC))
    cutoff = datetime(2001, 1, 2, tzinfo=UTC)

    def prune(after: PrunePosition | None = None) -> Pruned:
        return run(url, lambda store: store.prune(cutoff, batch=2, after=after))

    first = prune()
    assert (first.deleted, keys(url)) == (2, {"w1-parked", "w3-parked", "w5-done"})
    assert first.resume_after is not None
    # w1 becomes prunable behind the position; the walk does not go back for it.
    query(url, "UPDATE dead_letters SET status = 'replayed' WHERE log_id = 'w1-parked'")
    assert prune(first.resume_after) == Pruned(1, None)  # w5, and the end of the walk
    assert keys(url) == {"w1-parked", "w3-parked"}
    assert prune() == Pruned(1, None)  # the next run takes w1
    assert keys(url) == {"w3-parked"}


def test_prune_keeps_signals_in_flight_and_with_pending_dead_letters(url: str) -> None:
    async def scenario(store: Store) -> tuple[int, int, list[str]]:
        for log_id, outcome in (("p-done", DELIVERED), ("p-parked", PARKED)):
            at = await claimed(store, log_id)
            await store.record(log_id, at, PLAN, outcome, 1.0)
        await claimed(store, "p-flying")
        future = datetime.now(UTC) + timedelta(days=1)
        pruned = await store.prune(future, batch=10)
        return (
            pruned.deleted,
            (await store.prune(future, batch=10)).deleted,
            sorted(r.log_id for r in (await store.list_logs(LogQuery())).items),
        )

    pruned, again, left = run(url, scenario)
    assert (pruned, again) == (1, 0)
    assert left == ["p-flying", "p-parked"]
    assert {r["log_id"] for r in query(url, "SELECT log_id FROM idempotency_keys")} == set(left)
