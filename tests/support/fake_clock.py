"""A clock for the dispatcher that no test waits on: ``sleep`` moves it on at once."""

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
