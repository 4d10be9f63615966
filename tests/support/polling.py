"""Waiting for a state the system under test reaches by itself, when there is no event to wait
on: another process, a background loop, a file someone else writes. A check is polled until it
holds, bounded by real (monotonic) time; the check always runs once more after the deadline, so
a slow machine fails only when the state really was not reached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout_s: float, detail: Callable[[], str] | None) -> AssertionError:
    message = f"timed out after {timeout_s} s waiting for {what}"
    return AssertionError(f"{message}\n{detail()}" if detail else message)


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float = 20.0,
    *,
    interval_s: float = 0.05,
    what: str = "the condition",
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy, and return that; after ``timeout_s``
    fail naming ``what``, followed by ``detail()`` (a log's tail, the last state seen)."""
    give_up = time.monotonic() + timeout_s
    while True:
        past_deadline = time.monotonic() > give_up
        found = check()
        if found:
            return found
        if past_deadline:
            raise _timed_out(what, timeout_s, detail)
        time.sleep(interval_s)  # between two checks of the condition, not instead of one


async def eventually(
    check: Callable[[], object],
    timeout_s: float = 10.0,
    *,
    interval_s: float = 0.01,
    what: str = "the condition",
) -> None:
    """``wait_for`` inside an event loop: the loop runs between checks. The bound is real time,
    not the loop's clock (a test may move that clock)."""
    give_up = time.monotonic() + timeout_s
    while True:
        past_deadline = time.monotonic() > give_up
        if check():
            return
        if past_deadline:
            raise _timed_out(what, timeout_s, None)
        await asyncio.sleep(interval_s)
