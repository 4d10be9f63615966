"""A fair share for every sender: five quiet senders measured alone, then again beside a noisy
sender at 20 times their total rate, all against one slow agent. The quiet senders' p99 must stay
within 1.5 times their p99 alone, and none of their signals may be refused.

With 40-50 quiet signals a phase, p99 is their slowest one or two: a single stall of the machine
(a disk flush, a stolen CPU) in the second phase can put one signal over the bound while the
median and the router's queue of waiting senders show nothing. So a p99 over the bound is
measured once more, both phases anew; the verdict is the second measurement's. Unfairness is
systematic and fails both (``CHAOS_ROUTER_ENV="SENDER_MAX_IN_FLIGHT=0"`` shows it); a stall
seldom hits twice. Both measurements are in the notes."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence

from chaos.client import Signal, poll, steady_load
from chaos.invariants import ACKNOWLEDGED, Answer, percentile
from chaos.run import Run, wait_quiet
from chaos.stack import overrides

QUIET_SENDERS = 5
QUIET_RATE = 2.0  # signals/s per quiet sender: 10/s in all, 3 agent slots busy on average
NOISY_FACTOR = 20  # the noisy sender sends 20 times the quiet senders' total: 200/s
AGENT_DELAY_MS = 300  # the one slow agent
GLOBAL_CONCURRENCY = 12  # agent slots: 12 / 0.3 s = 40 signals/s, far below the noisy rate
SENDER_MAX_IN_FLIGHT = 6  # the noisy sender holds at most 6 slots; its excess gets 429
P99_BOUND = 1.5
METRICS_EVERY_S = 0.05


async def noisy_sender(run: Run) -> None:
    """Phase 1: the quiet senders alone. Phase 2: the same load beside the noisy sender."""
    stack = run.stack
    await stack.agents.set("good-a", mode="slow", delay_ms=AGENT_DELAY_MS)
    env = {
        "GLOBAL_CONCURRENCY": str(GLOBAL_CONCURRENCY),
        "SENDER_MAX_IN_FLIGHT": str(SENDER_MAX_IN_FLIGHT),
        "LOG_LEVEL": "WARNING",
        **overrides(),  # CHAOS_ROUTER_ENV="SENDER_MAX_IN_FLIGHT=0" shows the scenario failing
    }
    replica = await stack.start_replica("router-a", env=env)
    for attempt in (1, 2):
        alone, together = await _measure(run, replica.base_url, attempt)
        ratio = _p99_ratio(alone, together)
        if ratio <= P99_BOUND or attempt == 2:
            break
        run.notes.append(
            f"first measurement: quiet p99 {_ms(_latencies(together), 99)} ms beside the noisy "
            f"sender, {_ms(_latencies(alone), 99)} ms alone "
            f"({ratio:.2f}x, over {P99_BOUND:g}x): measured once more"
        )
    _verdict(run, alone, together)


async def _measure(run: Run, base_url: str, attempt: int) -> tuple[list[Answer], list[Answer]]:
    """The quiet senders alone, then beside the noisy sender; their answers in each phase."""
    alone_s, together_s = run.scale.n(4, 15), run.scale.n(5, 20)
    alone = await _quiet(run, f"alone{attempt}", alone_s)
    stop = asyncio.Event()
    noisy = asyncio.create_task(_noisy(run, stop, together_s + 2, attempt))
    peak = asyncio.create_task(_peak_waiting(run, base_url, stop))
    try:
        # Phase 2 starts once the noisy sender holds its slots (or was refused: the limit is on).
        await _noisy_engaged(run, attempt)
        together = await _quiet(run, f"together{attempt}", together_s)
    finally:
        stop.set()
        sent = await noisy
        waiting, refusals = await peak
    await wait_quiet(run)
    _noisy_notes(run, sent, together_s + 2, waiting, refusals, attempt)
    return alone, together


async def _quiet(run: Run, phase: str, duration_s: float) -> list[Answer]:
    """One open-loop stream at the quiet senders' total rate, their signals in turn."""
    stack = run.stack
    rate = QUIET_SENDERS * QUIET_RATE

    def make(index: int) -> Signal:
        sender = f"quiet-{index % QUIET_SENDERS}"
        log_id = f"{sender}-{phase}-{run.tag}-{index}"
        return Signal(log_id, {"route": "fast", "n": index}, sender=sender)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(duration_s, stop.set)
    total = int(rate * duration_s) + 1
    await steady_load(
        stack.recorder, make, stack.pick("router-a"), rate_per_s=rate, stop=stop, max_requests=total
    )
    marker = f"-{phase}-{run.tag}-"
    return [
        a for a in stack.recorder.answers if a.log_id.startswith("quiet-") and marker in a.log_id
    ]


async def _noisy(run: Run, stop: asyncio.Event, max_s: float, attempt: int) -> int:
    """The noisy sender, open loop: it does not slow down when refused (a retry storm)."""
    stack = run.stack
    rate = NOISY_FACTOR * QUIET_SENDERS * QUIET_RATE

    def make(index: int) -> Signal:
        log_id = f"{_noisy_prefix(attempt)}{run.tag}-{index}"
        return Signal(log_id, {"route": "fast", "n": index}, sender="noisy")

    # No client-side bound below the router's own MAX_IN_FLIGHT: the router must do the bounding.
    return await steady_load(
        stack.recorder,
        make,
        stack.pick("router-a"),
        rate_per_s=rate,
        stop=stop,
        max_requests=int(rate * max_s),
        max_in_flight=2000,
    )


def _noisy_prefix(attempt: int) -> str:
    return f"noisy{attempt}-"


async def _noisy_engaged(run: Run, attempt: int) -> None:
    prefix = _noisy_prefix(attempt)

    async def engaged() -> bool:
        noisy = [a for a in run.stack.recorder.answers if a.log_id.startswith(prefix)]
        return len(noisy) >= SENDER_MAX_IN_FLIGHT

    await poll(engaged, timeout_s=5, every_s=0.05)


async def _peak_waiting(run: Run, base_url: str, stop: asyncio.Event) -> tuple[int, int]:
    """The highest ``senders_waiting`` seen on /metrics; ``sender_refusals_total`` at the end."""
    peak = refusals = 0
    while True:
        values = await _metrics(run, base_url)
        peak = max(peak, int(values.get("senders_waiting", 0)))
        refusals = int(values.get("sender_refusals_total", refusals))
        if stop.is_set():
            return peak, refusals
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), METRICS_EVERY_S)


async def _metrics(run: Run, base_url: str) -> dict[str, float]:
    values: dict[str, float] = {}
    with contextlib.suppress(Exception):
        async with run.stack.session.get(f"{base_url}/metrics") as reply:
            for line in (await reply.text()).splitlines():
                name, _, value = line.partition(" ")
                if name in ("senders_waiting", "sender_refusals_total"):
                    values[name] = float(value)
    return values


def _p99_ratio(alone: Sequence[Answer], together: Sequence[Answer]) -> float:
    p99_alone = percentile(_latencies(alone), 99)
    return percentile(_latencies(together), 99) / p99_alone if p99_alone else float("inf")


def _verdict(run: Run, alone: Sequence[Answer], together: Sequence[Answer]) -> None:
    base, under = _latencies(alone), _latencies(together)
    p99_alone, p99_together = percentile(base, 99), percentile(under, 99)
    ratio = _p99_ratio(alone, together)
    run.notes.append(
        f"quiet senders p50/p99: alone {_ms(base, 50)}/{_ms(base, 99)} ms, beside the noisy "
        f"sender {_ms(under, 50)}/{_ms(under, 99)} ms ({ratio:.2f}x, bound {P99_BOUND:g}x; "
        f"{len(alone)} and {len(together)} signals)"
    )
    refused = Counter(
        f"{a.status} {a.code or ''}".strip()
        for a in (*alone, *together)
        if a.status not in ACKNOWLEDGED
    )
    if refused:
        listed = ", ".join(f"{n}x {what}" for what, n in refused.most_common())
        run.fail("fairness", f"quiet senders' signals refused or failed: {listed}")
    if ratio > P99_BOUND:
        run.fail(
            "fairness",
            f"quiet p99 beside the noisy sender {p99_together * 1000:.0f} ms is {ratio:.2f}x "
            f"their p99 alone ({p99_alone * 1000:.0f} ms), over {P99_BOUND:g}x",
        )


def _noisy_notes(
    run: Run, sent: int, seconds: float, waiting: int, refusals: int, attempt: int
) -> None:
    prefix = _noisy_prefix(attempt)
    noisy = [a for a in run.stack.recorder.answers if a.log_id.startswith(prefix)]
    statuses = Counter(f"{a.status} {a.code or ''}".strip() for a in noisy)
    listed = ", ".join(f"{n}x {what}" for what, n in statuses.most_common())
    run.notes.append(
        f"noisy sender: {sent} signals at {NOISY_FACTOR * QUIET_SENDERS * QUIET_RATE:g}/s "
        f"(20x the quiet total) over at most {seconds:g} s; answers {listed}"
    )
    run.notes.append(
        f"/metrics: sender_refusals_total {refusals}, senders_waiting peaked at {waiting} "
        f"(GLOBAL_CONCURRENCY={GLOBAL_CONCURRENCY}, SENDER_MAX_IN_FLIGHT={SENDER_MAX_IN_FLIGHT}, "
        f"agent {AGENT_DELAY_MS} ms)"
    )
    if not statuses.get("429 sender_over_limit"):
        run.fail("fault", "the noisy sender was never refused: the per-sender limit never engaged")


def _latencies(answers: Sequence[Answer]) -> list[float]:
    return [a.ended - a.started for a in answers if a.status in ACKNOWLEDGED]


def _ms(latencies: Sequence[float], q: float) -> str:
    return f"{percentile(latencies, q) * 1000:.0f}"


__all__ = ["noisy_sender"]
