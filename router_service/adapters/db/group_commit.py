"""Group commit: the outcomes of concurrent requests share one transaction and one WAL flush.

Each request is still answered only after the commit that holds its row. Batches form by
themselves: a request that finds no batch being written writes its own row at once (no task, no
queue: one request at a time pays nothing for batching); rows that arrive meanwhile queue up and
go to a writer task as one batch when it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Row = TypeVar("Row")

MAX_BATCH = 128


class GroupCommit(Generic[Row]):
    def __init__(self, write: Callable[[list[Row]], Awaitable[None]]) -> None:
        """``write`` commits a batch of rows durably, or raises."""
        self._write = write
        self._queue: list[tuple[Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._writing = False  # a batch is being written (by a request or the writer task)

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def submit(self, row: Row) -> None:
        """Returns once the commit holding ``row`` is durable."""
        if not self._writing:
            self._writing = True
            try:
                await self._write([row])
            finally:
                self._hand_over()
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)  # a cancelled waiter's failure is not "unretrieved"
        self._queue.append((row, done))
        await asyncio.shield(done)  # a cancelled request does not cancel its neighbours' commit

    def _hand_over(self) -> None:
        if self._queue:
            self._writer = asyncio.create_task(self._write_batches())
        else:
            self._writing = False

    async def _write_batches(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._write([row for row, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writing = False


def _retrieve(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()
