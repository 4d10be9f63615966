"""Postgres: two replays of one aggregate signal's dead letters, one entry each, at the same
moment (two processes, or two replay jobs). Each marks its entry and counts what is still
outstanding; the last one to finish must find nothing and mark the signal delivered."""

from __future__ import annotations

import asyncio

import asyncpg

from router_service.domain.outcome import AgentResult, DeadLetter, Outcome, Status
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.service.records import DeadLetterQuery, ReplayResult
from tests.support.db import migrated_database, query
from tests.support.polling import wait_for
from tests.support.store import open_store, record_outcome, signal

PLAN = Plan(
    kind="fanout",
    rule="route-fanout",
    mode=Mode.AGGREGATE,
    agents=(
        AgentSpec("alpha", "http://127.0.0.1:9/agents/alpha"),
        AgentSpec("beta", "http://127.0.0.1:9/agents/beta"),
    ),
)
BOTH_FAILED = Outcome(
    Status.DEAD_LETTERED,
    None,
    (
        AgentResult("alpha", False, 500, 1, 1.0, error="HTTP 500"),
        AgentResult("beta", False, 500, 1, 1.0, error="HTTP 500"),
    ),
    (DeadLetter("alpha", "HTTP 500", 1), DeadLetter("beta", "HTTP 500", 1)),
)


def waiting_on_locks(url: str) -> int:
    rows = query(
        url,
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(rows[0]["n"])


def test_two_replays_of_one_signal_at_once_leave_it_delivered() -> None:
    async def scenario(url: str) -> None:
        async with open_store(url) as store:
            assert (await store.claim(signal("agg"), PLAN, "a" * 32, "router-a", 30.0)).won
            assert await record_outcome(store, "agg", PLAN, BOTH_FAILED, 1.0) == 2
            page = await store.list_dead_letters(DeadLetterQuery())
            entries = await store.claim_dead_letters(
                limit=None, ids=[e.id for e in page.items], owner="router-b", lease_s=30.0
            )
            assert len(entries) == 2
            # Another transaction holds the signal's row, so that both replays meet at it.
            holder = await asyncpg.connect(url)
            try:
                hold = holder.transaction()
                await hold.start()
                await holder.execute("SELECT 1 FROM signals WHERE log_id = 'agg' FOR UPDATE")
                replays = [
                    asyncio.create_task(
                        store.finish_replay(
                            entry,
                            ReplayResult(
                                ok=True,
                                response={entry.agent: "ok"},
                                results=(AgentResult(entry.agent or "", True, 200, 1, 1.0),),
                            ),
                            max_replays=3,
                        )
                    )
                    for entry in entries
                ]
                await asyncio.to_thread(
                    wait_for,
                    lambda: waiting_on_locks(url) >= 2,
                    what="both replays waiting for the signal's row",
                )
                await hold.rollback()
                assert await asyncio.gather(*replays) == ["replayed", "replayed"]
            finally:
                await holder.close()

    with migrated_database("postgres") as url:
        asyncio.run(scenario(url))
        [row] = query(url, "SELECT status FROM signals WHERE log_id = 'agg'")
    assert row["status"] == "delivered"
