"""The events sink: the service emits typed events; metrics and JSON logs subscribe here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router_service.observability.logging import event_logger, get_logger
from router_service.observability.metrics import Metrics, children
from router_service.observability.tracing import TraceContext

CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}

if TYPE_CHECKING:
    from router_service.domain.routing import Plan
    from router_service.observability.otel import SpanExporter
    from router_service.runtime.reload import ReloadReport


class Telemetry:
    """``Events`` implemented by Prometheus metrics plus one JSON log line per signal/attempt."""

    def __init__(
        self, metrics: Metrics, logger: Any = None, spans: SpanExporter | None = None
    ) -> None:
        self.metrics = metrics
        self._log = logger or event_logger()
        self._spans = spans
        # The metrics every signal touches, their children kept (``metrics.children``).
        self._received = children(metrics.signals_received)
        self._latency = children(metrics.router_latency)
        self._overhead = children(metrics.router_overhead)
        self._completed = children(metrics.signals_completed)
        self._agent_latency = children(metrics.agent_latency)
        self._db_latency = children(metrics.db_latency)

    def signal_received(self, kind: str) -> None:
        self._received(kind).inc()

    def signal_finished(
        self,
        *,
        log_id: str,
        kind: str,
        rule: str,
        status: str,
        agents: list[str],
        latency_s: float,
        agent_s: float,
        duplicate: bool,
        trace: TraceContext,
    ) -> None:
        self._log.info(
            "signal.routed",
            log_id=log_id,
            kind=kind,
            rule=rule,
            status=status,
            agents=agents,
            duplicate=duplicate,
            latency_ms=round(latency_s * 1000, 3),
        )
        self._latency(kind).observe(latency_s)
        self._overhead(kind).observe(max(0.0, latency_s - agent_s))
        self._completed(kind, status).inc()
        if self._spans is not None:
            from opentelemetry.trace import SpanKind

            attributes = {
                "router.log_id": log_id,
                "router.kind": kind,
                "router.rule": rule,
                "router.status": status,
                "router.duplicate": duplicate,
            }
            self._spans.record("POST /route", trace, latency_s, attributes, kind=SpanKind.SERVER)

    def agent_attempt(
        self,
        *,
        agent: str,
        outcome: str,
        status_code: int | None,
        latency_s: float,
        attempt: int,
        span: TraceContext,
        error: str | None,
    ) -> None:
        self._agent_latency(agent, outcome).observe(latency_s)
        if outcome != "ok":
            self.metrics.routing_errors.labels(agent).inc()
        self._log.info(
            "agent.attempt",
            agent=agent,
            attempt=attempt,
            outcome=outcome,
            status_code=status_code,
            latency_ms=round(latency_s * 1000, 3),
            span_id=span.span_id,
            error=error,
        )
        if self._spans is not None:
            from opentelemetry.trace import SpanKind

            attributes = {
                "router.agent": agent,
                "router.attempt": attempt,
                "router.outcome": outcome,
                "http.response.status_code": status_code,
            }
            self._spans.record(
                f"agent {agent}", span, latency_s, attributes, kind=SpanKind.CLIENT, error=error
            )

    def retry(self, *, agent: str, delay_s: float) -> None:
        self.metrics.retry_attempts.inc()

    def circuit_state(self, *, agent: str, state: str) -> None:
        self.metrics.circuit_state.labels(agent).set(CIRCUIT_STATES[state])
        self._log.warning("agent.circuit", agent=agent, state=state)

    def circuit_rejected(self, *, agent: str) -> None:
        self.metrics.circuit_rejections.labels(agent).inc()

    def hedge(self, *, agent: str, outcome: str) -> None:
        self.metrics.hedges.labels(agent, outcome).inc()

    def sender_refused(self) -> None:
        self.metrics.sender_refusals.inc()

    def senders_waiting(self, count: int) -> None:
        self.metrics.senders_waiting.set(count)

    def outcome_write_retry(self, *, log_id: str, attempt: int, delay_s: float, error: str) -> None:
        self.metrics.outcome_write_retries.inc()
        self._log.warning(
            "signal.outcome_retry",
            log_id=log_id,
            attempt=attempt,
            delay_ms=round(delay_s * 1000, 3),
            error=error,
        )

    def dispatch_crashed(self, *, log_id: str, error: BaseException) -> None:
        self._log.error("dispatch.crashed", log_id=log_id, exc_info=error)

    def outcome_superseded(self, *, log_id: str, own: str, stored: str) -> None:
        self.metrics.outcomes_superseded.inc()
        self._log.warning("signal.outcome_superseded", log_id=log_id, own=own, stored=stored)

    def signal_recovered(self, *, log_id: str, status: str, trace_id: str) -> None:
        get_logger("recovery").warning(
            "signal.recovered", log_id=log_id, status=status, trace_id=trace_id
        )

    def background_failed(self, *, step: str, error: str) -> None:
        get_logger("recovery").warning(f"{step}.failed", error=error)

    def dead_lettered(self, count: int) -> None:
        self.metrics.dlq.inc(count)

    def dlq_backlog(self, size: int) -> None:
        self.metrics.dlq_backlog.set(size)

    def replayed(self, *, outcome: str) -> None:
        self.metrics.replays.labels(outcome).inc()

    def routing_reloaded(self, report: ReloadReport) -> None:
        """The audit event of a reload (who, how, what is active now) and its metric. The
        watcher's reloads are counted; their line is the watcher's own (``routing.reloaded``)."""
        self.metrics.routing_reloads.labels(report.outcome).inc()
        if report.trigger == "watch":
            return
        fields = report.as_dict()
        if report.outcome == "refused":
            self._log.error("routing.reload", audit=True, **fields)
        else:
            self._log.info("routing.reload", audit=True, **fields)

    def replay_job_stopped(self, *, job_id: int, error: BaseException, interrupted: bool) -> None:
        log = get_logger("replay")
        if interrupted:
            log.warning("replay.job_interrupted", job_id=job_id, error=str(error))
        else:
            log.error("replay.job_failed", job_id=job_id, exc_info=error)

    def audit(self, event: str, **fields: object) -> None:
        """An operator's action (replay, reload): one JSON line naming the key, never the key."""
        self._log.info(event, audit=True, **fields)

    def shadow_diff(
        self,
        *,
        log_id: str,
        active: Plan,
        shadow_kind: str,
        shadow_rule: str,
        shadow_agents: list[str],
    ) -> None:
        self.metrics.shadow_route_diff.labels(active.kind, shadow_kind).inc()
        self._log.info(
            "shadow.diff",
            log_id=log_id,
            active_kind=active.kind,
            active_rule=active.rule,
            active_agents=active.agent_names,
            shadow_kind=shadow_kind,
            shadow_rule=shadow_rule,
            shadow_agents=shadow_agents,
        )

    def replay_attempt(
        self, *, job_id: int | None, log_id: str, outcome: str, trace: TraceContext
    ) -> None:
        """One replayed entry: its own trace, linked to the signal's original trace."""
        self._log.info(
            "replay.attempt",
            job_id=job_id,
            log_id=log_id,
            outcome=outcome,
            replay_trace_id=trace.trace_id,
            linked_trace_ids=list(trace.links),
        )
        if self._spans is not None:
            from opentelemetry.trace import SpanKind

            attributes = {"router.log_id": log_id, "router.outcome": outcome}
            if job_id is not None:
                attributes["router.replay_job_id"] = str(job_id)
            self._spans.record("dlq replay", trace, 0.0, attributes, kind=SpanKind.INTERNAL)

    def close(self) -> None:
        if self._spans is not None and not self._spans.shutdown():
            self._log.warning(
                "otel.flush_abandoned",
                error="the OTLP collector did not take the queued spans in time; they are dropped",
            )

    def db_call(self, *, operation: str, latency_s: float, ok: bool) -> None:
        self._db_latency(operation, "ok" if ok else "error").observe(latency_s)

    def db_pool(self, *, in_use: int = 0, size: int = 0) -> None:
        if in_use:
            self.metrics.pool_in_use.inc(in_use)
        if size:
            self.metrics.pool_size.inc(size)
