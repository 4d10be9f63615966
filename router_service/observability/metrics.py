"""Prometheus metrics. Labels are bounded: kind, agent, outcome, status, operation — never ids."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from router_service import __version__

# Fine around 1-10 ms to read a p50 of a few ms, and on to seconds for the deadline.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Label values are bounded by design (kinds, agents, outcomes, operations, routes); this bounds
# the cache below even if they were not.
MAX_CHILDREN = 1024


def children(metric: Any) -> Callable[..., Any]:
    """``metric.labels``, each distinct set of values asked for once. prometheus_client's
    ``labels()`` checks and converts its values and takes a lock on every call, for a child it
    hands out unchanged each time; the hot path asks several times per signal."""
    return lru_cache(maxsize=MAX_CHILDREN)(metric.labels)


def multiprocess_dir() -> str | None:
    """Set (by ``serve --workers N``) before any worker imports prometheus_client."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Every metric of one service instance, in its own registry (no process-global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.signals_received = Counter(
            "signals_received", "Validated signals, duplicates included", ["kind"], registry=r
        )
        self.router_latency = Histogram(
            "router_latency_seconds",
            "Time from request to answer for /route",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.routing_errors = Counter(
            "routing_errors", "Failed agent attempts", ["agent"], registry=r
        )
        self.dlq = Counter("dlq", "Dead-letter entries created", registry=r)
        self.retry_attempts = Counter("retry_attempts", "Agent attempts retried", registry=r)
        self.outcome_write_retries = Counter(
            "outcome_write_retries",
            "Outcome writes of dispatched signals tried again after the database failed them",
            registry=r,
        )
        self.outcomes_superseded = Counter(
            "outcomes_superseded",
            "Outcomes not written because another owner had finished the signal first",
            registry=r,
        )
        self.dlq_backlog = Gauge(
            "dlq_backlog", "Pending dead-letter entries", registry=r, multiprocess_mode="mostrecent"
        )
        self.signals_completed = Counter(
            "signals_completed", "Signals answered, by final status", ["kind", "status"], registry=r
        )
        self.agent_latency = Histogram(
            "agent_call_latency_seconds",
            "One agent attempt, by outcome (ok, retryable, permanent)",
            ["agent", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.router_overhead = Histogram(
            "router_overhead_seconds",
            "Router's own time per signal: total minus the slowest awaited agent call",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "router_in_flight_requests",
            "Requests being served",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.replays = Counter(
            "dlq_replays", "Dead-letter replays, by outcome", ["outcome"], registry=r
        )
        self.db_latency = Histogram(
            "db_call_latency_seconds",
            "Database calls, by operation and outcome",
            ["operation", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_responses = Counter(
            "http_responses",
            "HTTP responses, by route and status class",
            ["route", "status_class"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "agent_circuit_state",
            "Circuit breaker per agent: 0 closed, 1 half-open, 2 open",
            ["agent"],
            registry=r,
            multiprocess_mode="max",
        )
        self.circuit_rejections = Counter(
            "agent_circuit_rejections",
            "Calls not made because the agent's circuit was open",
            ["agent"],
            registry=r,
        )
        self.hedges = Counter(
            "hedges",
            "Hedge calls of hedge routes: won, lost, failed, or no_budget (not made)",
            ["agent", "outcome"],
            registry=r,
        )
        # Fairness without sender labels: senders are unbounded, these two are not.
        self.sender_refusals = Counter(
            "sender_refusals",
            "Signals refused with 429 sender_over_limit (SENDER_MAX_IN_FLIGHT)",
            registry=r,
        )
        self.senders_waiting = Gauge(
            "senders_waiting",
            "Distinct senders with agent attempts waiting for a slot",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_in_use = Gauge(
            "db_pool_connections_in_use",
            "Checked-out database connections",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "db_pool_size", "Connections the pools keep", registry=r, multiprocess_mode="livesum"
        )
        self.routing_reloads = Counter(
            "routing_reloads",
            "Routing file reloads, by outcome (reloaded, unchanged, refused)",
            ["outcome"],
            registry=r,
        )
        self.shadow_route_diff = Counter(
            "shadow_route_diff",
            "Live signals the shadow routing file would route to another kind",
            ["active_kind", "shadow_kind"],
            registry=r,
        )
        self.otel_spans = Counter(
            "otel_spans",
            "Spans for the OTLP collector, by result (exported, failed, dropped)",
            ["result"],
            registry=r,
        )
        self.build_info = Gauge(
            "router_build_info",
            "Build information (always 1)",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(__version__).set(1)

    def render(self) -> bytes:
        """This process's registry, or every worker's when running multi-process."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
