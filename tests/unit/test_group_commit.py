"""Group commit on its own: batches form while one is written, each caller gets its own row's
result, and a batch refused for one row's data fails that row alone."""

from __future__ import annotations

import asyncio

import pytest

from router_service.adapters.db.group_commit import GroupCommit


class RowRefused(Exception):
    pass


class Database:
    """Writes batches; refuses any batch holding ``poison`` (as one transaction would)."""

    def __init__(self, poison: str | None = None, error: type[Exception] = RowRefused) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []  # the rows written by the single statement
        self.poison = poison
        self.error = error

    async def write(self, rows: list[str]) -> list[str]:
        self.batches.append(list(rows))
        await asyncio.sleep(0)  # the database's round trip: others queue meanwhile
        if self.poison in rows:
            raise self.error(f"refused {self.poison}")
        return [row.upper() for row in rows]

    async def write_one(self, row: str) -> str:
        self.singles.append(row)
        [result] = await self.write([row])
        return result

    def group_commit(self, isolate: bool = False) -> GroupCommit[str, str]:
        return GroupCommit(self.write, self.write_one, isolate=_isolate if isolate else _never)


def _isolate(exc: Exception) -> bool:
    return isinstance(exc, RowRefused)


def _never(_exc: Exception) -> bool:
    return False


async def _submit_all(commit: GroupCommit[str, str], rows: list[str]) -> list[object]:
    return await asyncio.gather(*(commit.submit(r) for r in rows), return_exceptions=True)


def test_concurrent_rows_share_a_batch_and_get_their_own_results() -> None:
    db = Database()
    results = asyncio.run(_submit_all(db.group_commit(), ["a", "b", "c", "d"]))
    assert results == ["A", "B", "C", "D"]
    # The first is written at once, alone; the three that came meanwhile share one batch.
    assert db.batches == [["a"], ["b", "c", "d"]]


def test_after_a_crowded_write_the_rows_of_one_loop_turn_share_a_batch() -> None:
    """Once rows have queued behind a write, the next first row waits out the loop turn: the
    rows submitted in that turn go as one batch, not as one row alone and the rest behind."""
    db = Database()

    async def scenario() -> list[object]:
        commit = db.group_commit()
        assert await _submit_all(commit, ["a", "b", "c"]) == ["A", "B", "C"]  # b, c queued
        return await _submit_all(commit, ["d", "e", "f"])

    assert asyncio.run(scenario()) == ["D", "E", "F"]
    assert db.batches == [["a"], ["b", "c"], ["e", "f", "d"]]
    assert db.singles == ["a"]


def test_a_first_row_cancelled_while_it_waits_out_the_turn_hands_the_queue_on() -> None:
    db = Database()

    async def scenario() -> object:
        commit = db.group_commit()
        await _submit_all(commit, ["a", "b", "c"])  # b, c queued: the next first row waits
        first = asyncio.create_task(commit.submit("d"))
        second = asyncio.create_task(commit.submit("e"))
        await asyncio.sleep(0)  # d waits out the turn; e queues behind it
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(scenario()) == "E"
    assert "d" not in [row for batch in db.batches for row in batch]


def test_rows_one_at_a_time_are_each_written_at_once() -> None:
    db = Database()

    async def scenario() -> list[str]:
        commit = db.group_commit()
        await _submit_all(commit, ["a", "b", "c"])  # b, c queued: the next first row waits
        return [await commit.submit(row) for row in ("d", "e", "f")]

    assert asyncio.run(scenario()) == ["D", "E", "F"]
    assert db.singles == ["a", "d", "e", "f"]
    assert db.batches[2:] == [["d"], ["e"], ["f"]]


def test_a_batch_of_one_is_written_by_the_single_statement() -> None:
    # A batch of one is common at low rates, and the single statement costs the client a little
    # less than a batch of one (``python -m bench.batch_cost``).
    db = Database()
    results = asyncio.run(_submit_all(db.group_commit(), ["a", "b"]))
    assert results == ["A", "B"]
    assert db.singles == ["a", "b"]
    assert db.batches == [["a"], ["b"]]


def test_a_row_refused_in_a_batch_fails_only_its_own_caller() -> None:
    db = Database(poison="c")
    commit = db.group_commit(isolate=True)
    results = asyncio.run(_submit_all(commit, ["a", "b", "c", "d"]))
    assert results[:2] == ["A", "B"]
    assert results[3] == "D"
    assert isinstance(results[2], RowRefused)
    # The refused batch, then each of its rows alone.
    assert db.batches == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]


def test_a_batch_failing_for_another_reason_fails_every_caller_once() -> None:
    db = Database(poison="c", error=ConnectionError)
    commit = db.group_commit(isolate=True)
    results = asyncio.run(_submit_all(commit, ["a", "b", "c", "d"]))
    assert results[0] == "A"
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    assert db.batches == [["a"], ["b", "c", "d"]]  # not written again row by row


def test_a_lone_row_that_fails_raises_to_its_caller() -> None:
    db = Database(poison="a")
    commit = db.group_commit(isolate=True)
    with pytest.raises(RowRefused):
        asyncio.run(commit.submit("a"))
    assert db.batches == [["a"]]


class GatedDatabase(Database):
    """Holds every write until ``gate`` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def write(self, rows: list[str]) -> list[str]:
        self.batches.append(list(rows))
        await self.gate.wait()
        return [row.upper() for row in rows]


def test_a_caller_cancelled_while_queued_leaves_its_row_written_and_its_neighbours_answered() -> (
    None
):
    db = GatedDatabase()
    commit = db.group_commit()

    async def scenario() -> list[object]:
        tasks = [asyncio.create_task(commit.submit(r)) for r in ("a", "b", "c", "d")]
        await asyncio.sleep(0)  # "a" is being written; the others wait in the queue
        tasks[2].cancel()
        await asyncio.sleep(0)
        db.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:2] == ["A", "B"]
    assert isinstance(results[2], asyncio.CancelledError)
    assert results[3] == "D"
    assert db.batches == [["a"], ["b", "c", "d"]]  # the cancelled caller's row is still written
