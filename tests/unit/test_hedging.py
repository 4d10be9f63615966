"""Hedging as data: the percentile window, the delay it gives, and the budget."""

from __future__ import annotations

from router_service.domain.hedging import MIN_SAMPLES, HedgeBudget, LatencyWindow, hedge_delay
from router_service.domain.routing import HedgePolicy


def test_no_percentile_until_enough_samples_then_the_p95() -> None:
    window = LatencyWindow()
    for ms in range(1, MIN_SAMPLES):
        window.observe(ms / 1000)
    assert window.percentile(0.95) is None
    assert hedge_delay(HedgePolicy(), window) is None
    for ms in range(MIN_SAMPLES, 101):
        window.observe(ms / 1000)
    assert window.percentile(0.95) == 0.096
    assert hedge_delay(HedgePolicy(), window) == 0.096
    assert hedge_delay(HedgePolicy(after_s=0.02), window) == 0.02
    assert hedge_delay(HedgePolicy(after_s=0.02), None) == 0.02


def test_the_window_forgets_old_samples() -> None:
    window = LatencyWindow(size=MIN_SAMPLES)
    for _ in range(MIN_SAMPLES):
        window.observe(1.0)
    for _ in range(MIN_SAMPLES):
        window.observe(0.001)
    assert window.percentile(0.99) == 0.001


def test_the_budget_allows_its_share_and_caps_savings() -> None:
    budget = HedgeBudget(cap=2.0)
    spent = 0
    for _ in range(100):
        budget.deposit(0.05)
        spent += budget.try_spend()
    assert spent == 5
    for _ in range(1000):
        budget.deposit(0.05)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
