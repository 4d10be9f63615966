"""Hedging as data: when to start the next agent, and how many extra calls are allowed.

``LatencyWindow`` keeps an agent's recent successful attempt latencies (per process) and reads a
percentile from them. ``HedgeBudget`` caps hedges at a share of calls: every call of a hedge
route deposits ``max_extra`` of a credit, every hedge spends one, and at most ``cap`` credits are
saved, so a quiet hour cannot fund a burst. An empty budget means no hedge, never a failure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from router_service.domain.routing import HedgePolicy

MIN_SAMPLES = 20  # fewer successful attempts than this: no percentile yet, so no hedge


@dataclass(slots=True)
class LatencyWindow:
    size: int = 256
    samples: deque[float] = field(default_factory=deque)

    def observe(self, seconds: float) -> None:
        self.samples.append(seconds)
        if len(self.samples) > self.size:
            self.samples.popleft()

    def percentile(self, share: float) -> float | None:
        if len(self.samples) < MIN_SAMPLES:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def hedge_delay(policy: HedgePolicy, window: LatencyWindow | None) -> float | None:
    """Seconds to wait before hedging; None when there is nothing to go on."""
    if policy.after_s is not None:
        return policy.after_s
    return window.percentile(policy.percentile) if window is not None else None


@dataclass(slots=True)
class HedgeBudget:
    cap: float = 10.0
    credits: float = 0.0

    def deposit(self, share: float) -> None:
        self.credits = min(self.cap, self.credits + share)

    def try_spend(self) -> bool:
        if self.credits < 1:
            return False
        self.credits -= 1
        return True
