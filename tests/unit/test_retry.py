"""Retry policy: capped exponential ceiling, full jitter, attempts and deadline, statuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router_service.domain.retry import RetryPolicy, is_retryable_status

POLICY = RetryPolicy(max_attempts=3, base_s=0.050, cap_s=0.500)


def _never_called() -> float:
    raise AssertionError("backoff randomness must not be used when Retry-After is given")


def test_default_policy_is_three_attempts_50ms_base_500ms_cap() -> None:
    assert RetryPolicy() == POLICY


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.05), (2, 0.10), (3, 0.20), (4, 0.40), (5, 0.50), (6, 0.50), (30, 0.50)],
)
def test_ceiling_doubles_from_base_and_stops_at_cap(attempt: int, ceiling: float) -> None:
    policy = RetryPolicy(max_attempts=50, base_s=0.050, cap_s=0.500)
    assert policy.ceiling(attempt) == pytest.approx(ceiling)


def test_ceiling_is_cap_when_cap_is_below_base() -> None:
    assert RetryPolicy(base_s=1.0, cap_s=0.25).ceiling(1) == 0.25


def test_full_jitter_with_rand_zero_waits_zero() -> None:
    assert POLICY.backoff(2, rand=lambda: 0.0) == 0.0


def test_full_jitter_with_rand_near_one_waits_just_under_ceiling() -> None:
    delay = POLICY.backoff(2, rand=lambda: 0.999)
    assert delay < POLICY.ceiling(2)
    assert delay == pytest.approx(0.0999)


def test_full_jitter_scales_rand_by_ceiling() -> None:
    assert POLICY.backoff(3, rand=lambda: 0.5) == pytest.approx(0.10)


def test_next_delay_after_last_attempt_is_none() -> None:
    assert POLICY.next_delay(3, remaining_s=60.0, rand=lambda: 0.5) is None
    assert POLICY.next_delay(4, remaining_s=60.0, rand=lambda: 0.5) is None


def test_next_delay_before_last_attempt_is_the_backoff() -> None:
    assert POLICY.next_delay(1, remaining_s=60.0, rand=lambda: 0.5) == pytest.approx(0.025)
    assert POLICY.next_delay(2, remaining_s=60.0, rand=lambda: 0.5) == pytest.approx(0.05)


def test_next_delay_is_none_when_backoff_equals_remaining_time() -> None:
    assert POLICY.next_delay(1, remaining_s=0.025, rand=lambda: 0.5) is None


def test_next_delay_is_none_when_backoff_exceeds_remaining_time() -> None:
    assert POLICY.next_delay(1, remaining_s=0.020, rand=lambda: 0.5) is None


def test_next_delay_is_kept_when_backoff_fits_in_remaining_time() -> None:
    assert POLICY.next_delay(1, remaining_s=0.026, rand=lambda: 0.5) == pytest.approx(0.025)


def test_next_delay_honours_retry_after_instead_of_backoff() -> None:
    # 0.3 s is above the attempt-1 ceiling (0.05 s), so it cannot have come from backoff.
    delay = POLICY.next_delay(1, remaining_s=2.0, retry_after_s=0.3, rand=_never_called)
    assert delay == 0.3


def test_next_delay_honours_retry_after_of_zero() -> None:
    assert POLICY.next_delay(1, remaining_s=2.0, retry_after_s=0.0, rand=_never_called) == 0.0


def test_next_delay_is_none_when_retry_after_exceeds_remaining_time() -> None:
    assert POLICY.next_delay(1, remaining_s=2.0, retry_after_s=5.0, rand=_never_called) is None


def test_next_delay_is_none_when_retry_after_equals_remaining_time() -> None:
    assert POLICY.next_delay(1, remaining_s=2.0, retry_after_s=2.0, rand=_never_called) is None


def test_next_delay_ignores_retry_after_on_the_last_attempt() -> None:
    assert POLICY.next_delay(3, remaining_s=60.0, retry_after_s=0.1, rand=_never_called) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 204, 301, 400, 401, 403, 404, 409, 413, 422])
def test_client_error_statuses_are_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


@given(
    attempt=st.integers(min_value=1, max_value=1000),
    base_s=st.floats(min_value=0.0, max_value=10.0),
    cap_s=st.floats(min_value=0.0, max_value=60.0),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_delay_is_always_between_zero_and_cap(
    attempt: int, base_s: float, cap_s: float, r: float
) -> None:
    policy = RetryPolicy(max_attempts=attempt + 1, base_s=base_s, cap_s=cap_s)
    delay = policy.backoff(attempt, rand=lambda: r)
    assert 0.0 <= delay <= cap_s
    next_delay = policy.next_delay(attempt, remaining_s=float("inf"), rand=lambda: r)
    assert next_delay is not None
    assert 0.0 <= next_delay <= cap_s
