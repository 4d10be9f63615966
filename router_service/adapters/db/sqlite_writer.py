"""The SQLite store's writes: one at a time in the process, and the hot path's transactions
run whole on a thread of their own.

**One at a time.** SQLite has one writer. Left to SQLite, a transaction that finds the database
locked sleeps in its busy handler (1, 2, 5, 10 … 100 ms) and tries again: at 8 concurrent
signals that made a p90 of hundreds of milliseconds. Here every transaction of the process first
takes its turn (``turn``, first come first served), and the next starts the moment the last one
commits. Readers take no turn: WAL lets them read beside the writer.

**Whole on one thread.** Through aiosqlite, every statement, fetch, cursor, commit and the pool's
reset is a hop to the connection's thread and back: about twenty hops per signal (a claim and an
outcome), each a wake-up of another thread and a hand-over of the GIL. They cost about 3 ms of
CPU per signal and held the embedded default under 250 signals/s. ``run`` makes a transaction
one hop: the writer thread runs the same SQLAlchemy Core statements on its own synchronous
connection (pysqlite), commits, and hands back the result. The hot ones run on the driver's
cursor, compiled once (``sqlite_prepared.py``).

**Together.** The claims and outcomes of concurrent signals share a transaction and its flush
(``group_commit.py``): while one transaction is on the thread, those that arrive queue, and go
together as the next. A batch that SQLite refuses because of one of its rows is written again
row by row, so that the row fails alone.

**Flushed when it matters.** A transaction run with ``durable=False`` (the claim) commits
without waiting for the disk (``synchronous=NORMAL``), as the claim does on Postgres: no answer
leaves before its outcome's commit, which is durable (``synchronous=FULL``) and flushes the WAL,
the claim's frames before it included. A batch with any durable transaction is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from router_service.adapters.db.group_commit import GroupCommit
from router_service.adapters.db.sqlite_prepared import Prepared
from router_service.domain.errors import Overloaded

T = TypeVar("T")
# A claim's transaction and an outcome's alternate at one signal at a time: each switch is
# one statement on the driver's cursor, not a round of SQLAlchemy's execution.
_SYNCHRONOUS = {True: text("PRAGMA synchronous=FULL"), False: text("PRAGMA synchronous=NORMAL")}
Work = Callable[[Connection], Any]  # one caller's statements, run in a transaction


@dataclass(frozen=True, slots=True)
class _Job:
    work: Work
    durable: bool


class SqliteWriter:
    def __init__(self, engine: Engine, wait_s: float) -> None:
        """``wait_s``: how long a transaction waits for its turn (as long as SQLite's busy
        handler would wait) before it is refused as ``Overloaded``."""
        self._engine = engine
        self._wait_s = wait_s
        self._turns = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._commits: GroupCommit[_Job, Any] = GroupCommit(
            self._write_batch, self._write_one, _about_rows
        )
        self._flushing: bool | None = None  # the writer connection's setting (thread only)
        # The hot statements' compiled forms, for this engine (thread only): the pragma's
        # switch here, the claims and outcomes of the store's work.
        self.prepared = Prepared()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """The process's other writers wait while this block runs."""
        await self._take_turn()
        try:
            yield
        finally:
            self._turns.release()

    async def run(self, work: Callable[[Connection], T], *, durable: bool = True) -> T:
        """``work`` in a transaction on the writer thread, in its turn, perhaps with the work of
        other callers: returns once that transaction has committed (and reached the disk, when
        ``durable``), and raises when it rolled back. Work that has begun or queued is done
        even when its caller stops waiting."""
        result: T = await self._commits.submit(_Job(work, durable))
        return result

    async def close(self) -> None:
        await self._commits.close()
        await asyncio.to_thread(self._thread.shutdown)  # what was submitted finishes
        self._engine.dispose()

    async def _take_turn(self) -> None:
        try:
            async with asyncio.timeout(self._wait_s):
                await self._turns.acquire()
        except TimeoutError as exc:
            raise Overloaded("the database is busy with other writes; retry shortly") from exc

    async def _write_one(self, job: _Job) -> Any:
        return await self._on_thread(job)

    async def _write_batch(self, jobs: list[_Job]) -> list[Any]:
        durable = any(job.durable for job in jobs)
        result: list[Any] = await self._on_thread(
            _Job(lambda conn: [job.work(conn) for job in jobs], durable)
        )
        return result

    async def _on_thread(self, job: _Job) -> Any:
        """One transaction, in its turn; the turn ends when the thread is done with it, even
        if nobody waits for it any more."""
        await self._take_turn()
        try:
            done = asyncio.get_running_loop().run_in_executor(self._thread, self._transaction, job)
        except BaseException:
            self._turns.release()
            raise
        done.add_done_callback(self._end_turn)
        return await asyncio.shield(done)

    def _transaction(self, job: _Job) -> Any:
        with self._engine.connect() as conn:
            if self._flushing is not job.durable:  # outside a transaction, as SQLite requires
                self._flushing = None  # unknown until the pragma has run (a new connection: FULL)
                self.prepared.execute(conn, _SYNCHRONOUS[job.durable], {})  # nothing begins
                self._flushing = job.durable
            with conn.begin():
                return job.work(conn)

    def _end_turn(self, done: asyncio.Future[Any]) -> None:
        self._turns.release()
        if not done.cancelled():
            done.exception()  # retrieved: a caller that stopped waiting is told nothing


def _about_rows(exc: Exception) -> bool:
    """A batch's error that one of its rows may have caused (a constraint, a value), not the
    database's (locked, full, an I/O error: ``OperationalError``) or the turn's."""
    return isinstance(exc, SQLAlchemyError) and not isinstance(exc, OperationalError)
