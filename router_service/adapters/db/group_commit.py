"""Group commit: the writes of concurrent requests share one transaction and one round trip.

Each request is still answered only after the commit that holds its row, with its own row's
result. Batches form by themselves: a request that finds no batch being written writes its own
row at once (no task, no queue: one request at a time pays nothing for batching); rows that
arrive meanwhile queue up and go to a writer task as one batch when it is done. Once rows have
queued behind a write (the router is busy), the next request that finds no batch being written
first lets the rest of the event loop's turn run: the rows that turn brings go with its own as
one batch, where it would have written its row alone and left the rest to queue behind it (at 8
connections, about a fifth fewer round trips and about 9 % less of the router's CPU per signal;
``docs/performance-analysis.md``). One request at a time never queues, so never waits.

A batch is one transaction, so one row that the database refuses would fail its neighbours too.
When ``isolate`` says a batch's error is about the rows (not the database), each row of that
batch is written again alone: the refused row fails its own request and nobody else's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")
Result = TypeVar("Result")

MAX_BATCH = 128


def _never(_exc: Exception) -> bool:
    return False


class GroupCommit(Generic[Row, Result]):
    def __init__(
        self,
        write: Callable[[list[Row]], Awaitable[list[Result]]],
        write_one: Callable[[Row], Awaitable[Result]],
        isolate: Callable[[Exception], bool] = _never,
    ) -> None:
        """``write`` commits a batch of rows durably and returns one result per row, in order,
        or raises; ``write_one`` does the same for a row written alone (a single statement
        costs the client less than a batch of one)."""
        self._write = write
        self._write_one = write_one
        self._isolate = isolate
        self._queue: list[tuple[Row, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._writing = False  # a batch is being written (by a request or the writer task)
        self._crowded = False  # rows queued behind the last write: the next waits a loop turn

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def submit(self, row: Row) -> Result:
        """Returns ``row``'s result once the commit holding it is durable."""
        if not self._writing:
            self._writing = True
            if self._crowded:
                # Rows queued behind the last write: the rest of this loop turn may bring more.
                # Let it run, then write them all as one batch.
                try:
                    await asyncio.sleep(0)
                except BaseException:
                    self._hand_over()
                    raise
                if self._queue:
                    done = self._enqueue(row)
                    self._hand_over()
                    return await done
            try:
                return await self._write_one(row)
            finally:
                self._hand_over()
        # A cancelled request cancels only its own future: its row is still written, and the
        # batch skips the future when the results come (no shield needed, nor its two futures).
        return await self._enqueue(row)

    def _enqueue(self, row: Row) -> asyncio.Future[Result]:
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieve)  # a cancelled waiter's failure is not "unretrieved"
        self._queue.append((row, done))
        return done

    def _hand_over(self) -> None:
        self._crowded = bool(self._queue)
        if self._queue:
            self._writer = asyncio.create_task(self._write_batches())
        else:
            self._writing = False

    async def _write_batches(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                outcomes = await self._outcomes([row for row, _ in batch])
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if isinstance(outcome, _Failed):
                        done.set_exception(outcome.error)
                    else:
                        done.set_result(outcome)
                self._crowded = len(batch) > 1
        finally:
            self._writing = False

    async def _outcomes(self, rows: list[Row]) -> list[Result | _Failed]:
        """One result or failure per row."""
        if len(rows) == 1:  # a batch of one: the single statement, which costs the client less
            return await self._one_by_one(rows)
        try:
            return [*(await self._write(rows))]
        except Exception as exc:
            if not self._isolate(exc):
                return [_Failed(exc)] * len(rows)
        return await self._one_by_one(rows)

    async def _one_by_one(self, rows: list[Row]) -> list[Result | _Failed]:
        # One after the other: the writes of one group commit never overlap (a lane, in
        # ``pg_lane.py``, runs one statement at a time).
        outcomes: list[Result | _Failed] = []
        for row in rows:
            try:
                outcomes.append(await self._write_one(row))
            except Exception as exc:
                outcomes.append(_Failed(exc))
        return outcomes


class _Failed:
    """A row's failure, kept apart from results (which may be anything)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
