"""Regressions found in review: scalars are not nesting levels; top-level scalars are fine."""

from __future__ import annotations

import pytest

from router_service.adapters.agents import parse_retry_after
from router_service.domain.errors import ValidationFailed
from router_service.domain.retry import RetryPolicy
from router_service.jsonwire import check_depth


def test_a_scalar_inside_the_deepest_container_is_not_an_extra_level() -> None:
    check_depth([[1]], 2)
    check_depth({"a": {"b": "leaf"}}, 2)
    with pytest.raises(ValidationFailed):
        check_depth([[[1]]], 2)


@pytest.mark.parametrize("value", [1, "text", None, 2.5, True])
def test_top_level_scalars_have_depth_zero(value: object) -> None:
    check_depth(value, 2)


def test_unicode_digits_in_retry_after_are_ignored_not_fatal() -> None:
    assert parse_retry_after("²") is None


def test_huge_attempt_numbers_do_not_overflow_the_backoff() -> None:
    assert RetryPolicy(max_attempts=5000, cap_s=0.5).ceiling(1100) == 0.5
