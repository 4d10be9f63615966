"""Per-agent protection: a circuit breaker and a retry budget, as plain objects over a clock.

Breaker: ``failure_threshold`` consecutive failed attempts open it; while open every call fails
fast; after ``cooldown_s`` one probe at a time is let through (half-open); a success closes it, a
failure opens it again.

Retry budget: retries may be at most ``ratio`` of the calls of the last ``window_s`` seconds (plus
``min_retries`` so a quiet agent can still be retried), so an outage cannot multiply the load on an
agent by the number of attempts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int
    cooldown_s: float
    clock: Callable[[], float]
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def allow(self) -> bool:
        """May an attempt go out now? In half-open, only one probe at a time."""
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN:
            if self.probing:
                return False
            self.probing = True
        return True

    def force_probe(self) -> None:
        """An operator's explicit "try now" (a replay of named entries): the attempt goes out
        at once as the half-open probe, even within the cooldown."""
        if self.state is BreakerState.OPEN:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN:
            self.probing = True

    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it would now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self.clock())

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.probing = False

    def failure(self) -> None:
        self.probing = False
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()

    def release(self) -> None:
        """An allowed attempt ended without a verdict (cancelled): free the probe slot."""
        self.probing = False


@dataclass(slots=True)
class RetryBudget:
    ratio: float
    min_retries: int
    window_s: float
    clock: Callable[[], float]
    calls: deque[float] = field(default_factory=deque)
    retries: deque[float] = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        for times in (self.calls, self.retries):
            while times and times[0] < horizon:
                times.popleft()

    def record_call(self) -> None:
        now = self.clock()
        self.calls.append(now)
        # Trimmed here too: a healthy agent is never asked for a retry, and its window of calls
        # would otherwise grow by one timestamp per call for the life of the process.
        self._trim(now)

    def usage(self) -> tuple[int, float]:
        """Retries spent in the window, and how many the window allows now."""
        self._trim(self.clock())
        return len(self.retries), self.min_retries + self.ratio * len(self.calls)

    def try_retry(self) -> bool:
        """Spend one retry if the budget allows it."""
        now = self.clock()
        self._trim(now)
        if len(self.retries) >= self.min_retries + self.ratio * len(self.calls):
            return False
        self.retries.append(now)
        return True


@dataclass(slots=True)
class AgentGuard:
    """The breaker and the retry budget of one agent."""

    breaker: CircuitBreaker
    budget: RetryBudget


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    failure_threshold: int = 5
    cooldown_s: float = 10.0
    retry_ratio: float = 0.2
    min_retries: int = 10
    window_s: float = 10.0

    def guard(self, clock: Callable[[], float]) -> AgentGuard:
        return AgentGuard(
            CircuitBreaker(self.failure_threshold, self.cooldown_s, clock),
            RetryBudget(self.retry_ratio, self.min_retries, self.window_s, clock),
        )
