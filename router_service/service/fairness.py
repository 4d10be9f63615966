"""A fair share for every sender: a per-sender in-flight limit, and agent slots granted across
senders by deficit round robin when the process's agent concurrency is saturated.

``DeficitRoundRobin`` and ``SenderLimiter`` are plain objects (no event loop, no clock), so the
scheduling is unit-tested on its own; ``FairGate`` puts the round robin behind an async slot.

Deficit round robin (Shreedhar and Varghese): every sender with waiting attempts has a FIFO queue
and a deficit. When a sender's turn comes its deficit grows by its weight (its quantum); it is
served one attempt per unit of deficit, then the turn passes on. A sender whose queue empties
leaves the round and forgets its deficit. With weight 1 for everyone this is plain round robin:
one noisy sender with a thousand waiting attempts gets one slot per round, like each quiet one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class SenderWeights:
    """A sender's weight: the weight of the longest prefix it starts with, else 1."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        # Longest first, so the first match is the most specific.
        self._by_length = sorted((weights or {}).items(), key=lambda kv: -len(kv[0]))

    def __call__(self, sender: str) -> float:
        for prefix, weight in self._by_length:
            if sender.startswith(prefix):
                return weight
        return 1.0


class DeficitRoundRobin(Generic[T]):
    """Per-sender FIFO queues served in deficit round robin; each item costs one unit."""

    def __init__(self, weight: Callable[[str], float] | None = None) -> None:
        self._weight = weight or SenderWeights()
        self._queues: dict[str, deque[T]] = {}
        self._deficit: dict[str, float] = {}
        self._round: deque[str] = deque()  # senders with queued items, whose turn is next
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def senders(self) -> int:
        """Distinct senders with something queued."""
        return len(self._queues)

    def push(self, sender: str, item: T) -> None:
        queue = self._queues.get(sender)
        if queue is None:
            queue = self._queues[sender] = deque()
            self._deficit[sender] = 0.0
            self._round.append(sender)
        queue.append(item)
        self._size += 1

    def pop(self) -> T | None:
        """The next item in fair order; None when nothing is queued."""
        missed = 0  # senders passed over in a row, none with a unit of deficit
        while self._round:
            sender = self._round[0]
            if self._deficit[sender] < 1:
                self._deficit[sender] += self._weight(sender)
                if self._deficit[sender] < 1:  # a weight below 1 takes several rounds
                    self._round.rotate(-1)
                    missed += 1
                    if missed == len(self._round):
                        self._skip_empty_rounds()
                        missed = 0
                    continue
            queue = self._queues[sender]
            item = queue.popleft()
            self._size -= 1
            self._deficit[sender] -= 1
            if not queue:
                self._forget(sender)
            elif self._deficit[sender] < 1:
                self._round.rotate(-1)
            return item
        return None

    def _skip_empty_rounds(self) -> None:
        """A whole round served nobody: add at once the quanta of the rounds that would serve
        nobody either, as many as the soonest sender needs. One round at a time, senders of
        small weights alone held the event loop for 1/weight rounds a slot."""
        needed = {s: (1 - self._deficit[s]) / self._weight(s) for s in self._round}
        rounds = math.ceil(min(needed.values())) - 1
        if rounds > 0:
            for sender in self._round:
                self._deficit[sender] += rounds * self._weight(sender)

    def remove(self, sender: str, item: T) -> bool:
        """Take a queued item out (its waiter gave up); False when it is not queued."""
        queue = self._queues.get(sender)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        self._size -= 1
        if not queue:
            self._forget(sender)
        return True

    def _forget(self, sender: str) -> None:
        del self._queues[sender]
        del self._deficit[sender]
        self._round.remove(sender)


class SenderSlotsFull(TimeoutError):
    """The wait ran out on the sender's own share of the slots, not on the process's."""


class _Share:
    """The slots one sender holds, and its attempts waiting for one of them (in order)."""

    __slots__ = ("held", "waiting")

    def __init__(self) -> None:
        self.held = 0
        self.waiting: deque[asyncio.Future[None]] = deque()


class FairGate:
    """``capacity`` agent slots; when all are taken, waiters are granted them fairly across
    senders (``DeficitRoundRobin``), not first come first served. With ``per_sender``
    (``SENDER_MAX_AGENT_CALLS``), no sender holds more than that many slots at once, even
    while others are free: one signal sent to several agents takes several slots, so a limit
    on a sender's signals alone lets it hold that limit times its signals' fan-out, and slots
    are not taken back once granted. ``on_waiting`` hears the number of distinct senders
    waiting whenever it changes."""

    def __init__(
        self,
        capacity: int,
        weight: Callable[[str], float] | None = None,
        on_waiting: Callable[[int], None] | None = None,
        per_sender: int = 0,
    ) -> None:
        self._free = capacity
        self._waiting: DeficitRoundRobin[asyncio.Future[None]] = DeficitRoundRobin(weight)
        self._on_waiting = on_waiting or (lambda _: None)
        self._reported = 0
        self._per_sender = per_sender
        self._shares: dict[str, _Share] = {}  # only senders holding or waiting for a slot

    @contextlib.asynccontextmanager
    async def slot(self, sender: str) -> AsyncIterator[None]:
        await self.acquire(sender)
        try:
            yield
        finally:
            self.release(sender)

    async def acquire(self, sender: str) -> None:
        if self._take_now(sender):
            return
        if self._per_sender:
            await self._enter_share(sender)
        try:
            await self._acquire_slot(sender)
        except BaseException:
            self._leave_share(sender)
            raise

    async def acquire_within(self, sender: str, timeout_s: float) -> float:
        """``acquire``, giving up with ``TimeoutError`` after ``timeout_s`` (``SenderSlotsFull``
        when the sender's own share was full); returns the seconds waited. The caller
        ``release``s."""
        if self._take_now(sender):
            return 0.0
        began = time.perf_counter()
        if self._per_sender:
            try:
                async with asyncio.timeout(max(timeout_s, 0.0)):
                    await self._enter_share(sender)
            except TimeoutError:
                raise SenderSlotsFull from None
        try:
            async with asyncio.timeout(max(timeout_s - (time.perf_counter() - began), 0.0)):
                await self._acquire_slot(sender)
        except BaseException:
            self._leave_share(sender)
            raise
        return time.perf_counter() - began

    def release(self, sender: str) -> None:
        self._release_slot()
        self._leave_share(sender)

    def _take_now(self, sender: str) -> bool:
        """A slot at once, when one is free, nobody waits, and the sender is under its share."""
        if not self._slot_free():
            return False
        if self._per_sender:
            share = self._share_of(sender)
            if not self._share_open(share):
                return False
            share.held += 1
        self._free -= 1
        return True

    def _slot_free(self) -> bool:
        """A slot is free and nobody waits for one (a waiter is served first)."""
        return self._free > 0 and not len(self._waiting)

    def _share_of(self, sender: str) -> _Share:
        share = self._shares.get(sender)
        if share is None:
            share = self._shares[sender] = _Share()
        return share

    def _share_open(self, share: _Share) -> bool:
        """The sender holds fewer than its ``per_sender`` slots and none of its calls waits."""
        return share.held < self._per_sender and not share.waiting

    async def _acquire_slot(self, sender: str) -> None:
        if self._slot_free():
            self._free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.push(sender, granted)
        self._report()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release_slot()  # granted and cancelled in the same tick: hand it on
            else:
                self._waiting.remove(sender, granted)
                self._report()
            raise

    def _release_slot(self) -> None:
        while (granted := self._waiting.pop()) is not None:
            if not granted.done():
                granted.set_result(None)
                self._report()
                return
        self._free += 1
        self._report()

    async def _enter_share(self, sender: str) -> None:
        """One of the sender's ``per_sender`` slots; a freed one is handed to its next waiter."""
        share = self._share_of(sender)
        if self._share_open(share):
            share.held += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        share.waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._leave_share(sender)  # handed a share and cancelled in the same tick
            else:
                share.waiting.remove(turn)
                if not share.held and not share.waiting:
                    del self._shares[sender]
            raise

    def _leave_share(self, sender: str) -> None:
        if not self._per_sender:
            return
        share = self._shares[sender]
        while share.waiting:
            turn = share.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # handed on: the count of slots held stays
                return
        share.held -= 1
        if not share.held:
            del self._shares[sender]

    def _report(self) -> None:
        senders = self._waiting.senders
        if senders != self._reported:
            self._reported = senders
            self._on_waiting(senders)


class SenderLimiter:
    """At most ``limit`` signals in flight per sender in this process; 0 turns it off."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight: dict[str, int] = {}

    def enter(self, sender: str) -> bool:
        """Count the sender in; False (nothing counted) when it is at its limit."""
        if not self._limit:
            return True
        count = self._in_flight.get(sender, 0)
        if count >= self._limit:
            return False
        self._in_flight[sender] = count + 1
        return True

    def leave(self, sender: str) -> None:
        if not self._limit:
            return
        count = self._in_flight.get(sender, 0) - 1
        if count > 0:
            self._in_flight[sender] = count
        else:
            self._in_flight.pop(sender, None)  # the map holds only senders in flight
