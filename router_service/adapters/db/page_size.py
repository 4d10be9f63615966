"""How many rows one page of the log or of the dead letters takes: at most the asked ``limit``,
and no more than ``MAX_PAGE_BYTES`` of their payloads, answers and errors (the first row
always).

A page was ``limit`` rows whatever they held: 500 signals of 250 kB payloads made a 125 MB
answer, built whole in the router's memory (390 MB at its peak for one request, 3 GB for 24 at
once) while ``/route`` waited seconds for the event loop. A page now reads its rows' sizes
first (a few bytes a row), then only the rows that fit; the rest is the next page, behind
``next_cursor``, as any page's rest is.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_PAGE_BYTES = 4 * 1024 * 1024


def rows_that_fit(
    sizes: Sequence[int], limit: int, budget: int = MAX_PAGE_BYTES
) -> tuple[int, bool]:
    """(how many of the first rows the page takes, whether rows are left after them), for the
    sizes of up to ``limit + 1`` rows in page order."""
    taken = total = 0
    for size in sizes[:limit]:
        if taken and total + size > budget:
            break
        total += size
        taken += 1
    return taken, len(sizes) > taken
