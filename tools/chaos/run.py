"""What every scenario works with: its stack, its scale, its notes and violations, and the
helpers that wait for a fault to heal (all bounded in time)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from chaos.client import Signal, poll, settle
from chaos.invariants import ACKNOWLEDGED, Answer, Violation, in_windows
from chaos.stack import LEASE_S, REQUEST_DEADLINE_MS, SWEEP_INTERVAL_S, Stack

RECOVERY_BOUND_S = LEASE_S + SWEEP_INTERVAL_S + REQUEST_DEADLINE_MS / 1000 + 20
DEADLINE_S = REQUEST_DEADLINE_MS / 1000
BREAKER_COOLDOWN_S = 1


@dataclass(frozen=True, slots=True)
class Scale:
    quick: bool

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full


@dataclass
class Run:
    """What a scenario works with, and what it reports beyond the evidence."""

    stack: Stack
    scale: Scale
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    notes: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    crash_affected: set[str] = field(default_factory=set)
    recovery_s: float | None = None
    recovery_label: str | None = None  # when the recovery column means something else

    def signals(self, prefix: str, count: int, route: str, start: int = 0) -> list[Signal]:
        return [
            Signal(f"{prefix}-{self.tag}-{i}", {"route": route, "n": i})
            for i in range(start, start + count)
        ]

    def fail(self, check: str, detail: str) -> None:
        self.violations.append(Violation(check, detail))


async def wait_quiet(run: Run, timeout_s: float = RECOVERY_BOUND_S) -> float | None:
    """Until no signal is in_progress (the sweeper finished what a fault left)."""

    async def quiet() -> bool:
        return await run.stack.in_progress() == 0

    return await poll(quiet, timeout_s, every_s=0.25)


async def settle_all(
    run: Run, signals: Sequence[Signal], *replicas: str, concurrency: int = 32
) -> bool:
    """A careful client: resend what was not answered for good, then wait for the log to settle.
    False (with a violation) when that did not happen within the bound."""
    pick = run.stack.pick(*replicas)
    recorder = run.stack.recorder
    took = await settle(recorder, signals, pick, RECOVERY_BOUND_S, concurrency=concurrency)
    if took is None:
        unsettled = {s.log_id for s in signals} - run.stack.recorder.settled()
        why = "409 in_progress or 503 throughout"
        run.fail(
            "recovery",
            f"{len(unsettled)} signals never answered for good after {RECOVERY_BOUND_S:.0f} s "
            f"of retries ({why})",
        )
    if await wait_quiet(run) is None:
        run.notes.append("signals were still in_progress when the recovery bound ran out")
        return False
    return took is not None


def affected_by(answers: Sequence[Answer], windows: Sequence[tuple[float, float]]) -> set[str]:
    return {a.log_id for a in answers if in_windows(a.started, a.ended, windows)}


def first_ack_after(answers: Sequence[Answer], moment: float) -> float | None:
    acks = [a.ended for a in answers if a.started >= moment and a.status in ACKNOWLEDGED]
    return min(acks) - moment if acks else None


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


async def acks_grow(run: Run, more: int, timeout_s: float) -> None:
    """Until ``more`` further requests were acknowledged (load is flowing), bounded."""
    target = len(run.stack.recorder.acknowledged()) + more

    async def grown() -> bool:
        return len(run.stack.recorder.acknowledged()) >= target

    await poll(grown, timeout_s, every_s=0.05)


async def answers_grow(run: Run, more: int, since: float, timeout_s: float) -> None:
    """Until ``more`` requests sent after ``since`` were answered (whatever the answer)."""

    async def grown() -> bool:
        return sum(1 for a in run.stack.recorder.answers if a.started >= since) >= more

    await poll(grown, timeout_s, every_s=0.05)


async def post_json(run: Run, replica: str, path: str, body: object) -> object:
    target = run.stack.replicas[replica]
    headers = {"X-API-Key": target.env["API_KEY"]}
    timeout = aiohttp.ClientTimeout(total=120)
    url = f"{target.base_url}{path}"
    async with run.stack.session.post(url, json=body, headers=headers, timeout=timeout) as reply:
        if reply.status >= 500:
            run.fail("c", f"POST {path} answered {reply.status}: {(await reply.text())[:200]}")
        try:
            return await reply.json()
        except (aiohttp.ContentTypeError, ValueError):
            return {"status": reply.status}
