"""Retry policy as data: attempts, capped exponential backoff with full jitter, a deadline.

Randomness is injected, so the schedule is a pure function in tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUS


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_s: float = 0.050
    cap_s: float = 0.500

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
        # The exponent is capped so a huge attempt number cannot overflow a float.
        return float(min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 64)))

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, ceiling)."""
        return self.ceiling(attempt) * rand()

    def next_delay(
        self,
        attempt: int,
        remaining_s: float,
        retry_after_s: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """The wait before the next attempt, or ``None`` when there must be no next attempt.

        No retry after the last attempt, and none whose wait (or the agent's ``Retry-After``)
        would not leave time for another attempt before the deadline.
        """
        if attempt >= self.max_attempts:
            return None
        delay = retry_after_s if retry_after_s is not None else self.backoff(attempt, rand)
        if delay >= remaining_s:
            return None
        return delay
