"""``LoopTurnStream``: the log lines of one turn of the event loop leave in one flush; outside a
loop every flush goes through at once; a loop that ended owing a flush strands nothing."""

from __future__ import annotations

import asyncio

from router_service.observability.logging import LoopTurnStream


class _Stream:
    def __init__(self) -> None:
        self.buffer = b""
        self.flushed: list[bytes] = []  # what each flush sent out

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.flushed.append(self.buffer)
            self.buffer = b""


async def _next_turn() -> None:
    """Resume after the callbacks already scheduled (the loop runs them in order)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


def _line(stream: LoopTurnStream, text: bytes) -> None:
    stream.write(text + b"\n")
    stream.flush()  # as structlog's BytesLogger does after every line


def test_outside_a_loop_every_line_is_flushed_at_once() -> None:
    raw = _Stream()
    stream = LoopTurnStream(raw)  # type: ignore[arg-type]
    _line(stream, b"a")
    _line(stream, b"b")
    assert raw.flushed == [b"a\n", b"b\n"]


def test_the_lines_of_one_loop_turn_leave_in_one_flush() -> None:
    raw = _Stream()
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


def test_a_loop_that_ended_owing_a_flush_strands_no_later_line() -> None:
    raw = _Stream()
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
