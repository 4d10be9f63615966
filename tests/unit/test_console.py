"""The console's pure parts: session tokens and CSRF, the explain trace, histogram quantiles and
sparklines, and the re-send command."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Histogram

from router_service.config.routing_file import parse_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.console.explain import explain
from router_service.console.sampling import Sampler, histogram_buckets, quantile, sparkline
from router_service.console.session import SessionSigner
from router_service.console.views import resend_command
from router_service.domain.outcome import Status
from router_service.service.ports import LogRecord

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
    token, session = signer.issue("ops", frozenset({"logs:read"}))
    assert signer.verify(token) == session
    assert "secret" not in token


def test_a_tampered_foreign_or_expired_token_is_refused() -> None:
    clock = Clock()
    signer = SessionSigner(b"secret", 60, clock)
    token, _ = signer.issue("ops", frozenset({"logs:read"}))
    body, mac = token.split(".")
    forged_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    assert signer.verify(f"{forged_body}.{mac}") is None
    assert SessionSigner(b"other", 60, clock).verify(token) is None
    assert signer.verify("garbage") is None
    assert signer.verify(None) is None
    clock.now += 61
    assert signer.verify(token) is None


def test_a_csrf_token_belongs_to_one_session() -> None:
    signer = SessionSigner(b"secret", 60)
    _, first = signer.issue("ops", frozenset({"dlq:admin"}))
    _, second = signer.issue("ops", frozenset({"dlq:admin"}))
    assert signer.csrf_valid(first, signer.csrf_token(first))
    assert not signer.csrf_valid(first, signer.csrf_token(second))
    assert not signer.csrf_valid(first, "")
    assert not signer.csrf_valid(first, None)


def test_explain_lists_the_rules_looked_at_until_the_first_match() -> None:
    version = RoutingSource.fixed(parse_routing_config(ROUTING, "routing.yaml")).current()
    trace = explain(version, {"source": "pager", "level": 3, "text": "the site is down"})
    assert [(s.rule, s.matched) for s in trace.steps] == [("paged", False), ("words", True)]
    assert trace.steps[0].condition == 'all of (source equals "pager"; level gte 9)'
    assert trace.steps[1].condition == "any string has a keyword of outage, down"
    assert (trace.kind, trace.rule, trace.mode, trace.agents) == (
        "urgent", "words", "aggregate", ("a", "b"),
    )  # fmt: skip
    fallthrough = explain(version, {"text": "hello"})
    assert (fallthrough.rule, fallthrough.kind, fallthrough.agents) == (
        "default",
        "default",
        ("b",),
    )
    assert all(not s.matched for s in fallthrough.steps)


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
