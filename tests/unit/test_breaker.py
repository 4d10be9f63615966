"""Circuit breaker and retry budget over a fake clock."""

from __future__ import annotations

from router_service.domain.breaker import BreakerState, CircuitBreaker, RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 10.0, Clock())
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is False


def test_half_open_lets_one_probe_through_and_its_verdict_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.failure()
    clock.now += 9.9
    assert breaker.allow() is False
    clock.now += 0.2
    assert breaker.allow() is True
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() is False  # a second probe waits for the first
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 10.1
    assert breaker.allow() is True
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() is True


def test_a_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock)
    breaker.failure()
    clock.now += 2
    assert breaker.allow() is True
    breaker.release()
    assert breaker.allow() is True


def test_retry_budget_is_a_share_of_recent_calls_plus_a_minimum() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.5, min_retries=1, window_s=10, clock=clock)
    for _ in range(4):
        budget.record_call()
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]
    clock.now += 11  # the window slid past every call and retry
    assert budget.try_retry() is True
    assert budget.try_retry() is False


def test_a_forced_probe_goes_out_within_the_cooldown_and_its_verdict_decides() -> None:
    now = [0.0]
    breaker = CircuitBreaker(1, 10.0, lambda: now[0])
    breaker.failure()
    now[0] = 4.0
    assert breaker.retry_in_s() == 6.0
    assert not breaker.allow()
    breaker.force_probe()
    assert (breaker.state, breaker.probing) == (BreakerState.HALF_OPEN, True)
    assert not breaker.allow()  # the forced attempt is the one probe
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == 10.0
    breaker.force_probe()
    breaker.success()
    assert (breaker.state, breaker.retry_in_s()) == (BreakerState.CLOSED, 0.0)


def test_a_budget_that_is_never_asked_for_a_retry_keeps_only_its_window_of_calls() -> None:
    """A healthy agent: a million calls over a day must not be a million timestamps."""
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_retries=10, window_s=10, clock=clock)
    for _ in range(10_000):
        budget.record_call()
        clock.now += 0.01
    assert len(budget.calls) <= 1_001  # the last 10 s at 100 calls/s
