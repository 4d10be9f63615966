"""The agent client's pool: a waiter cancelled while a freed slot is handed on.

Found by the soak at overload (the open-loop generator shares this pool): a request timed out
while waiting for a slot, a connection closed in the same turn of the event loop, the wake-up
dropped the cancelled waiter, and the waiter's own clean-up then raised ValueError instead of
letting the cancellation through.
"""

from __future__ import annotations

import asyncio

import pytest

from router_service.adapters.connection_pool import ConnectionPool
from router_service.adapters.http1 import parse_target
from tests.support.polling import eventually


async def _cancelled_waiter_meets_a_wake_up() -> None:
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(
        lambda reader, writer: accepted.append(writer), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    target = parse_target(f"http://127.0.0.1:{port}/agent")
    pool = ConnectionPool(
        max_connections=1, max_idle_per_origin=1, idle_timeout_s=60.0, max_body=1024
    )
    try:
        held, _ = await pool._acquire(target, reuse=True)  # the only slot, busy
        waiting = asyncio.create_task(pool._acquire(target, reuse=True))
        # Until the task has reached its wait (a turn of the loop at a time).
        await eventually(lambda: pool._waiters, timeout_s=5, interval_s=0)
        waiting.cancel()  # its waiter is cancelled now; the task runs its clean-up later
        held.abort()
        pool.lost(held)  # the slot frees in the same turn: the wake-up meets the cancelled waiter
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not pool._waiters
    finally:
        await pool.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_a_cancelled_waiter_already_dropped_by_a_wake_up_is_cancelled_not_a_value_error() -> None:
    asyncio.run(_cancelled_waiter_meets_a_wake_up())
