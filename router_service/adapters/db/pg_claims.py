"""The claim on Postgres, group-committed.

Every signal's claim is a round trip before its dispatch. The claims of concurrent requests go
to the database together: one pipelined batch (``fetchmany``: the statement once per claim, one
transaction, one round trip), instead of a pool checkout and a round trip each. A claim alone
(one request at a time) is written at once, as before. A claim refused for its own data fails
only its own request (``group_commit.py``).

The batch is sent in key order, so that two processes claiming the same keys at once take them
in the same order (no deadlock); each claim learns whether it took its key by the ``log_id``
the statement returns. Two claims of one key in one batch: the first takes it, the second finds
it taken, as if they had been sent one after the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from router_service.adapters.db import pg_statements as sql
from router_service.adapters.db.group_commit import GroupCommit
from router_service.adapters.db.pg_pool import PgPool, refused_rows
from router_service.adapters.db.records import utcnow

ClaimParams = tuple[Any, ...]  # the parameters of ``pg_statements.CLAIM``; the log_id first


@dataclass(frozen=True, slots=True)
class ClaimWrite:
    took_key: bool  # the key was new: the lease and the log row are ours
    retried: bool  # the batch took its second try (the first connection died)


class PgClaims:
    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._lane = pool.lane("claim")  # the batches run one at a time: one connection kept
        self._last_instant = utcnow()
        self._batches: GroupCommit[ClaimParams, ClaimWrite] = GroupCommit(
            self._write, self._write_one, isolate=refused_rows
        )

    async def close(self) -> None:
        await self._batches.close()

    async def claim(self, params: ClaimParams) -> ClaimWrite:
        return await self._batches.submit(params)

    def instant(self) -> datetime:
        """The time a claim is taken at: never the same twice in this process, so that a claim
        re-sent after its connection died can tell its own first try's row (``was_ours``)."""
        now = utcnow()
        if now <= self._last_instant:
            now = self._last_instant + timedelta(microseconds=1)
        self._last_instant = now
        return now

    async def was_ours(self, log_id: str, instant: datetime, owner: str) -> bool:
        """Whether the lease on ``log_id`` is the one a claim at ``instant`` by ``owner`` took:
        the first try of a claim whose answer was lost with its connection. Not the trace id,
        which a client's ``traceparent`` sets, and a retry or a duplicate may carry too."""
        found = await self._pool.run(
            "claim", lambda conn: conn.fetchval(sql.LEASE_TAKEN_AT, log_id, instant, owner)
        )
        return found is not None

    async def _write_one(self, params: ClaimParams) -> ClaimWrite:
        taken, retried = await self._lane.run_twice(lambda conn: conn.fetchval(sql.CLAIM, *params))
        return ClaimWrite(taken is not None, retried)

    async def _write(self, batch: Sequence[ClaimParams]) -> list[ClaimWrite]:
        ordered = sorted(batch, key=lambda params: params[0])
        rows, retried = await self._lane.run_twice(lambda conn: conn.fetchmany(sql.CLAIM, ordered))
        taken = {row[0] for row in rows}
        writes = []
        for params in batch:
            writes.append(ClaimWrite(params[0] in taken, retried))
            taken.discard(params[0])  # a second claim of the key in this batch found it taken
        return writes
