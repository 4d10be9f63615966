"""``LoopTurnStream``: the log lines of one turn of the event loop leave in one write, also to
a stream with no buffer of its own (``PYTHONUNBUFFERED``); outside a loop every line is written
at once; a loop that ended owing a write strands nothing."""

from __future__ import annotations

import asyncio
import threading

from router_service.observability.logging import LoopTurnStream


class _RawStream:
    """A stream with no buffer, as ``sys.stdout.buffer`` is under ``PYTHONUNBUFFERED``: every
    ``write`` is a system call, recorded here."""

    def __init__(self) -> None:
        self.flushed: list[bytes] = []  # what each write sent out

    def write(self, data: bytes) -> int:
        self.flushed.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


async def _next_turn() -> None:
    """Resume after the callbacks already scheduled (the loop runs them in order)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


def _line(stream: LoopTurnStream, text: bytes) -> None:
    stream.msg(text + b"\n")  # as structlog calls its logger, once a line


def test_outside_a_loop_every_line_is_written_at_once() -> None:
    raw = _RawStream()
    stream = LoopTurnStream(raw)  # type: ignore[arg-type]
    _line(stream, b"a")
    _line(stream, b"b")
    assert raw.flushed == [b"a\n", b"b\n"]


def test_the_lines_of_one_loop_turn_leave_in_one_write() -> None:
    raw = _RawStream()
    stream = LoopTurnStream(raw)  # type: ignore[arg-type]

    async def scenario() -> list[list[bytes]]:
        seen = []
        for text in (b"a", b"b", b"c"):
            _line(stream, text)
        seen.append(list(raw.flushed))  # nothing out yet within the turn
        await _next_turn()
        seen.append(list(raw.flushed))
        _line(stream, b"d")
        await _next_turn()
        seen.append(list(raw.flushed))
        return seen

    within, after_turn, later = asyncio.run(scenario())
    assert within == []
    assert after_turn == [b"a\nb\nc\n"]
    assert later == [b"a\nb\nc\n", b"d\n"]


def test_a_loop_that_ended_owing_a_write_strands_no_later_line() -> None:
    raw = _RawStream()
    stream = LoopTurnStream(raw)  # type: ignore[arg-type]

    async def last_words() -> None:
        _line(stream, b"a")  # the loop ends before its next turn

    async def next_loop() -> None:
        _line(stream, b"b")
        await _next_turn()

    asyncio.run(last_words())
    asyncio.run(next_loop())
    assert raw.flushed[-1].endswith(b"b\n")
    assert b"".join(raw.flushed) == b"a\nb\n"
    _line(stream, b"c")  # and outside any loop, at once
    assert raw.flushed[-1] == b"c\n"


def test_lines_from_threads_and_a_loop_are_each_written_once() -> None:
    raw = _RawStream()
    stream = LoopTurnStream(raw)  # type: ignore[arg-type]

    def from_thread(name: str) -> None:
        for i in range(2000):
            _line(stream, f"{name}{i}".encode())

    async def from_loop() -> None:
        threads = [threading.Thread(target=from_thread, args=(name,)) for name in "tu"]
        for thread in threads:
            thread.start()
        for i in range(2000):
            _line(stream, f"l{i}".encode())
            if i % 10 == 0:
                await _next_turn()
        for thread in threads:
            await asyncio.to_thread(thread.join)

    asyncio.run(from_loop())
    lines = b"".join(raw.flushed).splitlines()
    assert sorted(lines) == sorted(f"{name}{i}".encode() for name in "tlu" for i in range(2000))
    for name in "tlu":  # each source's lines in the order it wrote them
        mine = [line for line in lines if line.startswith(name.encode())]
        assert mine == [f"{name}{i}".encode() for i in range(2000)]
