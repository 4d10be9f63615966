"""Clocks a test moves: the dispatcher's (``FakeClock``: ``sleep`` moves it on at once) and an
event loop's (``MovableClockLoop``: real I/O, and deadlines pass when the test says so)."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A ``perf_counter`` stand-in whose ``sleep`` moves time on at once (and yields once)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class MovableClockLoop(asyncio.SelectorEventLoop):
    """An event loop doing real I/O whose clock a test moves forward with ``advance``: every
    timer of the loop (``asyncio.timeout``, ``call_later``) sees the moved time, so a deadline
    passes at a step of the test, however fast or slow the machine runs."""

    def __init__(self) -> None:
        super().__init__()
        self.moved_s = 0.0

    def time(self) -> float:
        return super().time() + self.moved_s

    def advance(self, seconds: float) -> None:
        self.moved_s += seconds
