"""The fair share: deficit round robin across senders, the async gate over it, and the
per-sender in-flight limit."""

from __future__ import annotations

import asyncio

import pytest

from router_service.config.settings import parse_weights
from router_service.service.fairness import (
    DeficitRoundRobin,
    FairGate,
    SenderLimiter,
    SenderSlotsFull,
    SenderWeights,
)


def drain(queue: DeficitRoundRobin[str]) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_a_flooding_sender_gets_one_turn_per_round_like_everyone_else() -> None:
    queue: DeficitRoundRobin[str] = DeficitRoundRobin()
    for i in range(5):
        queue.push("noisy", f"n{i}")
    queue.push("quiet-1", "q1")
    queue.push("quiet-2", "q2")
    assert queue.senders == 3
    assert drain(queue) == ["n0", "q1", "q2", "n1", "n2", "n3", "n4"]
    assert queue.senders == 0
    assert len(queue) == 0


def test_weights_by_longest_prefix() -> None:
    weights = SenderWeights({"team-": 2.0, "team-batch-": 0.5})
    assert weights("team-a") == 2.0
    assert weights("team-batch-1") == 0.5
    assert weights("other") == 1.0
    queue: DeficitRoundRobin[str] = DeficitRoundRobin(weights)
    for i in range(4):
        queue.push("team-a", f"a{i}")
        queue.push("plain", f"p{i}")
        queue.push("team-batch-1", f"b{i}")
    # Per round: two for weight 2, one for weight 1, one every second round for weight 0.5.
    assert drain(queue)[:8] == ["a0", "a1", "p0", "a2", "a3", "p1", "b0", "p2"]


def test_senders_of_small_weights_alone_are_served_in_a_few_passes_not_one_per_round() -> None:
    """A weight of 1e-12 took the round robin 10^12 rounds a slot, on the event loop: the
    router answered nothing, not even /health/live."""
    asked = 0
    weights = SenderWeights({"tiny": 1e-12, "small": 3e-12})

    def weight(sender: str) -> float:
        nonlocal asked
        asked += 1
        if asked > 10_000:
            raise AssertionError("the round robin went round and round")
        return weights(sender)

    queue: DeficitRoundRobin[str] = DeficitRoundRobin(weight)
    for i in range(3):
        queue.push("tiny", f"t{i}")
        queue.push("small", f"s{i}")
    # The same order as one round at a time: three of small's turns come to one of tiny's.
    assert drain(queue) == ["s0", "s1", "s2", "t0", "t1", "t2"]
    assert asked < 100


def test_skipping_rounds_keeps_the_order_of_serving_them_one_at_a_time() -> None:
    queue: DeficitRoundRobin[str] = DeficitRoundRobin(
        SenderWeights({"a": 0.25, "b": 0.1, "c": 0.04})
    )
    for i in range(4):
        for sender in "abc":
            queue.push(sender, f"{sender}{i}")
    # As the round robin served them before it skipped rounds (computed at its parent).
    expected = ["a0", "a1", "b0", "a2", "a3", "b1", "c0", "b2", "b3", "c1", "c2", "c3"]
    assert drain(queue) == expected


def test_a_removed_item_leaves_the_round() -> None:
    queue: DeficitRoundRobin[str] = DeficitRoundRobin()
    queue.push("a", "a0")
    queue.push("b", "b0")
    assert queue.remove("a", "a0")
    assert not queue.remove("a", "a0")
    assert queue.senders == 1
    assert drain(queue) == ["b0"]


def test_parse_weights() -> None:
    assert parse_weights("") == {}
    assert parse_weights("team-=2, batch-=0.25") == {"team-": 2.0, "batch-": 0.25}
    assert parse_weights("slow-=0.001,fast-=1000") == {"slow-": 0.001, "fast-": 1000.0}
    for bad in ("team-", "=2", "team-=x", "team-=0", "team-=0.0009", "team-=1e-12", "t=1001"):
        with pytest.raises(ValueError, match=r"weight|prefix"):
            parse_weights(bad)
    with pytest.raises(ValueError, match="'team-' is given a weight twice"):
        parse_weights("team-=1,team-=2")  # the first was dropped without a word


def test_the_gate_grants_waiting_slots_across_senders_not_in_arrival_order() -> None:
    async def scenario() -> tuple[list[str], list[int]]:
        reported: list[int] = []
        gate = FairGate(1, on_waiting=reported.append)
        await gate.acquire("holder")
        granted: list[str] = []

        async def wait(sender: str, name: str) -> None:
            await gate.acquire(sender)
            granted.append(name)
            gate.release(sender)

        # Five from the noisy sender queue first, then one quiet signal.
        tasks = [asyncio.create_task(wait("noisy", f"n{i}")) for i in range(5)]
        tasks.append(asyncio.create_task(wait("quiet", "q")))
        while len(gate._waiting) < 6:  # every waiter queued
            await asyncio.sleep(0)
        gate.release("holder")
        await asyncio.gather(*tasks)
        return granted, reported

    granted, reported = asyncio.run(scenario())
    assert granted == ["n0", "q", "n1", "n2", "n3", "n4"]
    assert reported[:2] == [1, 2]  # distinct senders waiting, not waiters
    assert reported[-1] == 0


def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    async def scenario() -> bool:
        gate = FairGate(1)
        await gate.acquire("a")
        waiter = asyncio.create_task(gate.acquire("b"))
        while not len(gate._waiting):
            await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.release("a")
        # The slot is free again: a new acquire does not wait.
        await asyncio.wait_for(gate.acquire("c"), timeout=1)
        return True

    assert asyncio.run(scenario())


def test_a_waiter_granted_and_cancelled_in_the_same_tick_hands_the_slot_on() -> None:
    async def scenario() -> None:
        gate = FairGate(1)
        await gate.acquire("a")
        first = asyncio.create_task(gate.acquire("b"))
        second = asyncio.create_task(gate.acquire("c"))
        while len(gate._waiting) < 2:
            await asyncio.sleep(0)
        gate.release("a")  # grants b ...
        first.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, timeout=1)  # c got the slot b never used

    asyncio.run(scenario())


def test_sender_limiter_counts_per_sender_and_zero_is_off() -> None:
    limiter = SenderLimiter(2)
    assert limiter.enter("a")
    assert limiter.enter("a")
    assert not limiter.enter("a")
    assert limiter.enter("b")
    limiter.leave("a")
    assert limiter.enter("a")
    off = SenderLimiter(0)
    assert all(off.enter("a") for _ in range(1000))


def test_a_wait_for_a_slot_gives_up_at_its_timeout_and_leaves_no_waiter_behind() -> None:
    async def scenario() -> tuple[float, int, float]:
        gate = FairGate(1)
        await gate.acquire("busy")
        with pytest.raises(TimeoutError):
            await gate.acquire_within("late", 0.01)
        left = len(gate._waiting)
        gate.release("busy")
        waited_free = await gate.acquire_within("next", 5.0)  # free: no wait at all
        gate.release("next")
        loop = asyncio.get_running_loop()
        holder = loop.call_later(0.01, gate.release, "busy-again")
        await gate.acquire("busy-again")
        waited = await gate.acquire_within("queued", 5.0)  # granted when the holder releases
        holder.cancel()
        return waited_free, left, waited

    waited_free, left, waited = asyncio.run(scenario())
    assert left == 0
    assert waited_free == 0.0
    assert 0 < waited < 5.0


def test_a_sender_holds_at_most_its_share_of_the_slots_and_the_others_take_the_rest() -> None:
    """One signal sent to four agents takes four slots: with a limit on signals alone, a
    sender fanning out held four times its share, and the quiet senders' p99 went 1.6x."""

    async def scenario() -> None:
        gate = FairGate(4, per_sender=2)
        await gate.acquire("noisy")
        await gate.acquire("noisy")
        third = asyncio.create_task(gate.acquire("noisy"))
        await asyncio.sleep(0)
        assert not third.done()  # its own share is full; two slots of four are free
        await asyncio.wait_for(gate.acquire("quiet"), timeout=1)  # at once
        await asyncio.wait_for(gate.acquire("quiet"), timeout=1)
        gate.release("noisy")  # the noisy sender's next attempt takes the freed slot
        await asyncio.wait_for(third, timeout=1)
        with pytest.raises(SenderSlotsFull):
            await gate.acquire_within("noisy", 0.01)
        with pytest.raises(TimeoutError) as raised:
            await gate.acquire_within("other", 0.01)  # the process's slots are full
        assert not isinstance(raised.value, SenderSlotsFull)
        for sender in ("noisy", "noisy", "quiet", "quiet"):
            gate.release(sender)
        assert gate._shares == {}  # nothing kept for senders holding nothing
        assert gate._free == 4

    asyncio.run(scenario())


def test_a_turn_in_the_share_cancelled_as_it_is_handed_over_passes_to_the_next() -> None:
    async def scenario() -> None:
        gate = FairGate(8, per_sender=1)
        await gate.acquire("a")
        first = asyncio.create_task(gate.acquire("a"))
        second = asyncio.create_task(gate.acquire("a"))
        await asyncio.sleep(0)
        gate.release("a")  # hands the share to first ...
        first.cancel()  # ... cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, timeout=1)
        gate.release("a")
        assert gate._shares == {}
        assert gate._free == 8

    asyncio.run(scenario())
