"""Reads of many stored rows parsed, and the API's pages written, off the event loop.

A page holds up to about 4 MB of JSON (``adapters/page_size.py``), and a replay's selection or a
sweep of expired leases up to a hundred signals. Payloads that are legal on ``/route`` can be
dense: a 258 kB body of 43,000 one-item lists decodes in 9 ms, so one ``GET /logs?limit=500`` of
such signals held the event loop 250-370 ms, and eight readers at once held ``/route`` for up to
1.6 s. Pages now carry their JSON as stored (``StoredJson``); what still parses many rows (a
claim of entries, a sweep, the backtest's pages), and the writing of a page, runs on one thread
of its own: the event loop takes the GIL back between two values (after Python's switch
interval, 5 ms, or one value's decoding, whichever is longer), and the pages wait for each other
on that thread, not the loop for them. One thread: more would only take more turns of the GIL
from the loop.

Only work that is pure computation on values already read goes there (no connection, no
event-loop object); a signal's own path never does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-work")


async def off_loop(work: Callable[[], T]) -> T:
    """``work()`` on the page thread; its result, or its exception, here."""
    return await asyncio.get_running_loop().run_in_executor(_THREAD, work)
