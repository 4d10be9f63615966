"""The pure parts of the load generator: percentiles, schedule, signal mix and summary."""

from __future__ import annotations

import orjson
import pytest

from loadgen import (
    KIND_WEIGHTS,
    LatencySummary,
    RequestOutcome,
    open_loop_schedule,
    percentile,
    route_url,
    signal_mix,
    summarise,
)


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 15), (5, 15), (30, 20), (40, 20), (50, 35), (80, 40), (81, 50), (100, 50)],
)
def test_percentile_is_nearest_rank(q: float, expected: float) -> None:
    assert percentile([15, 20, 35, 40, 50], q) == expected


def test_percentile_of_one_to_hundred_is_the_rank_itself() -> None:
    data = [float(v) for v in range(1, 101)]

    assert [percentile(data, q) for q in (50, 90, 95, 99, 100)] == [50, 90, 95, 99, 100]


def test_percentile_rank_does_not_suffer_float_rounding() -> None:
    # As floats, 7 / 100 * 100 is 7.000000000000001 and 99.9 / 100 * 1000 is 999.0000000000001,
    # which would round the rank up by one.
    assert percentile(list(range(1, 101)), 7) == 7
    assert percentile(list(range(1, 1001)), 99.9) == 999


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.5], 1) == 7.5
    assert percentile([7.5], 99) == 7.5


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_outside_zero_to_hundred_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], q)


def test_percentile_of_no_data_is_refused() -> None:
    with pytest.raises(ValueError, match="no data"):
        percentile([], 50)


def test_latency_summary_sorts_and_reports_the_maximum() -> None:
    summary = LatencySummary.of([5.0, 1.0, 4.0, 2.0, 3.0])

    assert summary == LatencySummary(count=5, p50_ms=3, p90_ms=5, p95_ms=5, p99_ms=5, max_ms=5)


def test_latency_summary_of_nothing_is_none() -> None:
    assert LatencySummary.of([]) is None


def test_schedule_spaces_sends_evenly_at_the_rate() -> None:
    assert open_loop_schedule(5, 2.0) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert open_loop_schedule(0, 10.0) == []


def test_schedule_does_not_drift_over_many_requests() -> None:
    schedule = open_loop_schedule(100_000, 3.0)

    assert schedule[-1] == pytest.approx(99_999 / 3.0, abs=1e-9)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_schedule_refuses_a_rate_that_is_not_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        open_loop_schedule(3, rate)


def test_mix_is_deterministic_for_a_seed() -> None:
    first = signal_mix(300, seed=42, run_id="r")
    again = signal_mix(300, seed=42, run_id="r")
    other = signal_mix(300, seed=43, run_id="r")

    assert first == again
    assert [p.body for p in first] != [p.body for p in other]


def test_mix_duplicates_are_the_requested_share() -> None:
    plan = signal_mix(1000, seed=1, duplicates=0.05)

    assert sum(p.is_duplicate for p in plan) == 50
    assert not plan[0].is_duplicate


def test_duplicates_resend_an_earlier_original_with_its_log_id() -> None:
    plan = signal_mix(500, seed=7, duplicates=0.2)

    for request in plan:
        if request.duplicate_of is None:
            continue
        original = plan[request.duplicate_of]
        assert request.duplicate_of < request.index
        assert not original.is_duplicate
        assert request.body == original.body
        assert request.body["log_id"] == original.body["log_id"]


def test_originals_have_distinct_explicit_log_ids() -> None:
    plan = signal_mix(500, seed=3, duplicates=0.1, run_id="abc")
    log_ids = [p.body["log_id"] for p in plan if not p.is_duplicate]

    assert len(set(log_ids)) == len(log_ids) == 450
    assert all(log_id.startswith("load-abc-") for log_id in log_ids)


def test_no_duplicates_when_share_is_zero() -> None:
    assert not any(p.is_duplicate for p in signal_mix(200, seed=5, duplicates=0.0))


def test_duplicates_share_is_bounded() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        signal_mix(10, seed=1, duplicates=1.0)
    assert signal_mix(1, seed=1, duplicates=0.9)[0].duplicate_of is None
    assert signal_mix(0, seed=1) == []


def test_mix_covers_every_kind_and_sizes_from_small_to_kilobytes() -> None:
    plan = signal_mix(2000, seed=11)
    sizes = [len(orjson.dumps(p.body["payload"])) for p in plan]

    assert {p.kind for p in plan} == {kind for kind, _ in KIND_WEIGHTS}
    assert min(sizes) < 200
    assert max(sizes) > 3000


def test_mix_bodies_are_router_signals() -> None:
    plan = signal_mix(50, seed=2)
    billing = next(p for p in plan if p.kind == "billing")

    for request in plan:
        assert set(request.body) == {"log_id", "sender_id", "timestamp", "payload", "metadata"}
        assert request.body["sender_id"].startswith("sender-")
        assert request.body["timestamp"].endswith("Z")
    assert billing.body["payload"]["invoice_number"].startswith("INV-")
    assert billing.body["payload"]["invoice_number"] in billing.body["payload"]["message"]


def test_summary_counts_only_answers_as_latencies() -> None:
    outcomes = [
        RequestOutcome(0, False, 200, "delivered", latency_ms=10.0),
        RequestOutcome(1, True, 200, "delivered", duplicate_answer=True, latency_ms=30.0),
        RequestOutcome(2, False, 202, "dead_lettered", latency_ms=20.0),
        RequestOutcome(3, False, error="timeout"),
        RequestOutcome(4, True, error="dropped"),
        RequestOutcome(5, False, 502, latency_ms=5.0, error="non_json_body"),
    ]

    report = summarise(outcomes, 2.0, mode="open", seed=9, target_rate=3.0)

    assert report.requests == 6
    assert report.answered == 4
    assert report.throughput_rps == 2.0
    assert report.latency == LatencySummary(4, 10.0, 30.0, 30.0, 30.0, 30.0)
    assert report.status_codes == {200: 2, 202: 1, 502: 1}
    assert report.router_statuses == {"delivered": 2, "dead_lettered": 1}
    assert report.duplicates_sent == 1  # the dropped duplicate never left
    assert report.duplicates_answered == 1
    assert report.errors == {"timeout": 1, "dropped": 1, "non_json_body": 1}
    assert report.dropped == 1
    assert report.to_dict()["status_codes"] == {"200": 2, "202": 1, "502": 1}


def test_summary_of_all_failures_has_no_latency() -> None:
    report = summarise(
        [RequestOutcome(0, False, error="ClientConnectorError")], 0.1, mode="closed", seed=1
    )

    assert report.latency is None
    assert report.throughput_rps == 0.0


@pytest.mark.parametrize(
    "url", ["http://h:8000", "http://h:8000/", "http://h:8000/route", "http://h:8000/route/"]
)
def test_route_url_accepts_base_or_route_url(url: str) -> None:
    assert route_url(url) == "http://h:8000/route"
