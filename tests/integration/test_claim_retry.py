"""Postgres: a claim whose batch was sent again after its connection died (``PgLane``'s second
try) may find its own first try's row, committed before the answer was lost; it takes that row
back, and only that one. Two requests that share a ``traceparent`` (an instrumented client's
retry sends the same one) are a duplicate: one dispatch."""

from __future__ import annotations

import asyncio
from typing import Any

from router_service.adapters.db.pg_claims import ClaimWrite
from router_service.service.records import Claim
from tests.support.db import migrated_database
from tests.support.store import PLAN, open_store, signal

TRACE = "a" * 32


def test_a_retried_claim_takes_back_its_own_first_try_and_no_one_elses() -> None:
    async def scenario(url: str) -> tuple[Claim, Claim, Claim]:
        async with open_store(url) as store:
            original = await store.claim(signal("held"), PLAN, TRACE, "router-a", 30.0)
            claims: Any = store._claims  # type: ignore[attr-defined]
            write = claims.claim

            async def answer_lost(params: tuple[Any, ...]) -> ClaimWrite:
                """The first try ran (and committed, if the key was free); its answer was lost
                with the connection, and the second try found the key taken."""
                await write(params)
                return ClaimWrite(took_key=False, retried=True)

            claims.claim = answer_lost
            duplicate = await store.claim(signal("held"), PLAN, TRACE, "router-a", 30.0)
            own = await store.claim(signal("fresh"), PLAN, TRACE, "router-a", 30.0)
            return original, duplicate, own

    with migrated_database("postgres") as url:
        original, duplicate, own = asyncio.run(scenario(url))
    assert original.won
    assert not duplicate.won  # same sender, payload and traceparent: the original's outcome
    assert duplicate.record is not None
    assert duplicate.record.log_id == "held"
    assert own.won  # its own first try's row: dispatched once, by this request
