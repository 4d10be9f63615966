"""The console's pure parts: session tokens and CSRF, rule conditions in words, the replay form's
selection and its jobs' states, the shadow differences read from the counter, histogram
quantiles and sparklines, and the re-send command."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request

from router_service.api.auth import ApiKey, KeyRing
from router_service.config.routing_file import parse_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.console.access import session_of
from router_service.console.conditions import rule_condition
from router_service.console.pages import shadow_differences
from router_service.console.replays import JobView, rate, selection
from router_service.console.sampling import Sampler, histogram_buckets, quantile, sparkline
from router_service.console.session import ConsoleSession, SessionSigner
from router_service.console.views import resend_command
from router_service.domain.errors import ValidationFailed
from router_service.domain.outcome import Status
from router_service.service.records import (
    DeadLetterFilter,
    LogRecord,
    ReplayJobProgress,
    ReplayJobRecord,
)

ROUTING = """
agents:
  - {name: a, url: 'http://127.0.0.1:1/a'}
  - {name: b, url: 'http://127.0.0.1:1/b'}
rules:
  - id: paged
    kind: urgent
    when: {all: [{field: source, equals: pager}, {field: level, gte: 9}]}
  - id: words
    kind: urgent
    when: {keywords: [outage, down]}
routes:
  urgent: {agents: [a, b], mode: aggregate}
  default: {agents: [b], mode: fallback}
"""


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_token_round_trips_and_holds_no_key() -> None:
    signer = SessionSigner(b"secret", 60)
    token, session = signer.issue("ops", b"digest", frozenset({"logs:read"}))
    assert signer.verify(token) == session
    assert "secret" not in token


def test_a_tampered_foreign_or_expired_token_is_refused() -> None:
    clock = Clock()
    signer = SessionSigner(b"secret", 60, clock)
    token, _ = signer.issue("ops", b"digest", frozenset({"logs:read"}))
    body, mac = token.split(".")
    forged_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    assert signer.verify(f"{forged_body}.{mac}") is None
    assert SessionSigner(b"other", 60, clock).verify(token) is None
    assert signer.verify("garbage") is None
    assert signer.verify(None) is None
    clock.now += 61
    assert signer.verify(token) is None


def session_seen(signer: SessionSigner, keys: KeyRing, token: str) -> ConsoleSession | None:
    """``session_of`` for a request carrying ``token`` to a console holding ``keys``."""
    console = SimpleNamespace(signer=signer, keys=keys)
    scope = {
        "type": "http",
        "app": SimpleNamespace(state=SimpleNamespace(console=console)),
        "headers": [(b"cookie", f"router_console={token}".encode())],
    }
    return session_of(Request(scope))


def test_a_session_ends_when_its_key_is_replaced_under_the_same_name() -> None:
    signer = SessionSigner(b"secret", 60)
    old = ApiKey("default", b"old-digest")
    token, _ = signer.issue(old.name, old.digest, old.scopes)
    seen = session_seen(signer, KeyRing([old]), token)
    assert seen is not None
    assert seen.can("dlq:admin")
    # API_KEY rotated: the new key is "default" too, and the old one's sessions end with it.
    assert session_seen(signer, KeyRing([ApiKey("default", b"new-digest")]), token) is None
    assert session_seen(signer, KeyRing([ApiKey("renamed", b"old-digest")]), token) is None
    narrowed = session_seen(
        signer, KeyRing([ApiKey("default", b"old-digest", frozenset({"logs:read"}))]), token
    )
    assert narrowed is not None
    assert narrowed.scopes == {"logs:read"}


def test_a_csrf_token_belongs_to_one_session() -> None:
    signer = SessionSigner(b"secret", 60)
    _, first = signer.issue("ops", b"digest", frozenset({"dlq:admin"}))
    _, second = signer.issue("ops", b"digest", frozenset({"dlq:admin"}))
    assert signer.csrf_valid(first, signer.csrf_token(first))
    assert not signer.csrf_valid(first, signer.csrf_token(second))
    assert not signer.csrf_valid(first, "")
    assert not signer.csrf_valid(first, None)


def test_a_rule_condition_reads_in_the_routing_files_terms() -> None:
    version = RoutingSource.fixed(parse_routing_config(ROUTING, "routing.yaml")).current()
    assert rule_condition(version, "paged") == 'all of (source equals "pager"; level gte 9)'
    assert rule_condition(version, "words") == "any string has a keyword of outage, down"
    assert rule_condition(version, "default") is None


def test_a_replay_form_becomes_the_filter_the_preview_and_the_job_share() -> None:
    # Checkboxes, or the preview page's one comma-joined field: the same filter either way,
    # so the job's snapshot token (bound to the filter) matches the dry run's.
    assert selection(["3", "1"], "", "") == DeadLetterFilter(ids=(3, 1))
    assert selection(["3,1"], "alpha", "one") == DeadLetterFilter(ids=(3, 1))
    assert selection([], "alpha", "") == DeadLetterFilter(agent="alpha")
    assert selection([], "", "") == DeadLetterFilter()
    for bad in (["x"], [","], [",".join(["1"] * 2001)], ["0"], ["-3"], [str(2**63)]):
        with pytest.raises(ValidationFailed):
            selection(bad, "", "")
    assert selection([str(2**63 - 1)], "", "") == DeadLetterFilter(ids=(2**63 - 1,))
    assert rate("") == 10.0
    assert rate("0.5") == 0.5
    # The API's bounds (ReplayRequest.rate, replay-dlq --rate): 0.01 to 10000 per second.
    assert (rate("0.01"), rate("10000")) == (0.01, 10_000.0)
    for bad_rate in ("0", "-1", "1e-300", "0.009", "10001", "nan", "inf", "fast"):
        with pytest.raises(ValidationFailed):
            rate(bad_rate)


def _job(state: str, cancel_requested: bool = False) -> ReplayJobRecord:
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    return ReplayJobRecord(
        id=1, created_by="ops", created_at=moment, updated_at=moment, finished_at=None,
        state=state, filter=DeadLetterFilter(kind="one", upto_id=9), rate=2.0, max_entries=None,
        selected=4, progress=ReplayJobProgress(cursor_id=5, replayed=2),
        cancel_requested=cancel_requested,
        lease_owner=None, lease_expires_at=None, error=None,
    )  # fmt: skip


def test_a_job_page_offers_cancel_while_running_and_resume_once_stopped() -> None:
    running = JobView(_job("running"))
    assert (running.shown_state, running.cancellable, running.resumable) == ("running", True, False)
    asked = JobView(_job("running", cancel_requested=True))
    assert (asked.shown_state, asked.cancellable, asked.active) == ("cancelling", False, True)
    for state in ("cancelled", "failed"):
        stopped = JobView(_job(state))
        assert (stopped.cancellable, stopped.resumable, stopped.active) == (False, True, False)
    done = JobView(_job("done"))
    assert (done.cancellable, done.resumable) == (False, False)
    assert running.selection == "kind=one"  # the snapshot bound is shown apart


def test_shadow_differences_are_read_from_this_processs_counter() -> None:
    counter = Counter(
        "shadow_route_diff", "d", ["active_kind", "shadow_kind"], registry=CollectorRegistry()
    )
    assert shadow_differences(counter) == []
    counter.labels("one", "race").inc()
    counter.labels("chain", "one").inc(3)
    assert shadow_differences(counter) == [("chain", "one", 3), ("one", "race", 1)]


def test_quantiles_interpolate_within_a_bucket_like_prometheus() -> None:
    buckets = [(0.01, 50.0), (0.02, 90.0), (0.05, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == 0.01
    assert quantile(buckets, 0.7) == 0.015
    assert quantile(buckets, 0.95) == 0.035
    assert quantile([(0.01, 0.0), (float("inf"), 0.0)], 0.5) is None


def test_the_sampler_reports_each_window_and_the_whole_run() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", ["kind"], buckets=(0.01, 0.1, 1.0), registry=registry)
    sampler = Sampler(histogram, lambda: 3, interval_s=5)
    for _ in range(10):
        histogram.labels("a").observe(0.005)
    first = sampler.sample()
    for _ in range(10):
        histogram.labels("b").observe(0.5)
    second = sampler.sample()
    assert first.p50_ms is not None
    assert first.p50_ms < 10
    assert second.p50_ms is not None
    assert second.p50_ms > 100  # the second window saw only slow signals
    assert second.in_flight == 3
    assert histogram_buckets(histogram)[-1] == (float("inf"), 20.0)
    p50, p95, count = sampler.headline()
    assert count == 20
    assert p50 is not None
    assert p95 is not None
    assert p50 <= 10 < p95


def test_a_sparkline_scales_to_its_largest_value_and_needs_two_points() -> None:
    assert sparkline([5.0]) == ""
    points = [tuple(map(float, p.split(","))) for p in sparkline([0.0, None, 10.0]).split()]
    assert [x for x, _ in points] == [0.0, 120.0, 240.0]
    assert points[0][1] == points[1][1] == 38.0
    assert points[2][1] == 2.0


def test_the_resend_command_quotes_the_payload_and_leaves_the_key_to_the_shell() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = LogRecord(
        log_id="id-1", trace_id="t", sender_id="it's me", payload_hash="h",
        payload={"text": "don't; rm -rf / $(whoami)"}, metadata={}, signal_ts=moment,
        kind="k", rule="r", mode="fallback", routed_agents=[], status=Status.DELIVERED,
        results=None, response=None, latency_ms=None, created_at=moment, updated_at=moment,
    )  # fmt: skip
    command = resend_command(record, "http://router:8000/")
    words = shlex.split(command)
    assert words[:5] == ["curl", "-sS", "-X", "POST", "http://router:8000/route"]
    assert "X-API-Key: $ROUTER_API_KEY" in words
    body = words[words.index("--data-binary") + 1]
    assert body == (
        '{"sender_id":"it\'s me","log_id":"id-1","timestamp":"2026-01-02T03:04:05Z",'
        '"payload":{"text":"don\'t; rm -rf / $(whoami)"}}'
    )
