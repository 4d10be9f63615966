"""An ``Events`` sink that remembers what it heard, for tests to assert on."""

from __future__ import annotations

from typing import Any

from router_service.domain.trace import TraceContext


class RecordingEvents:
    """``Events`` that remembers every call as ``(name, arguments)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for seen, args in self.seen if seen == name]

    def _note(self, name: str, **args: Any) -> None:
        self.seen.append((name, args))

    def signal_received(self, kind: str) -> None:
        self._note("signal_received", kind=kind)

    def signal_finished(self, **args: Any) -> None:
        self._note("signal_finished", **args)

    def agent_attempt(self, **args: Any) -> None:
        self._note("agent_attempt", **args)

    def retry(self, *, agent: str, delay_s: float) -> None:
        self._note("retry", agent=agent, delay_s=delay_s)

    def circuit_state(self, *, agent: str, state: str) -> None:
        self._note("circuit_state", agent=agent, state=state)

    def circuit_rejected(self, *, agent: str) -> None:
        self._note("circuit_rejected", agent=agent)

    def hedge(self, *, agent: str, outcome: str) -> None:
        self._note("hedge", agent=agent, outcome=outcome)

    def sender_refused(self) -> None:
        self._note("sender_refused")

    def senders_waiting(self, count: int) -> None:
        self._note("senders_waiting", count=count)

    def outcome_write_retry(self, *, log_id: str, attempt: int, delay_s: float, error: str) -> None:
        self._note(
            "outcome_write_retry", log_id=log_id, attempt=attempt, delay_s=delay_s, error=error
        )

    def dispatch_crashed(self, *, log_id: str, error: BaseException) -> None:
        self._note("dispatch_crashed", log_id=log_id, error=error)

    def outcome_superseded(self, *, log_id: str, own: str, stored: str) -> None:
        self._note("outcome_superseded", log_id=log_id, own=own, stored=stored)

    def signal_recovered(self, *, log_id: str, status: str, trace_id: str) -> None:
        self._note("signal_recovered", log_id=log_id, status=status, trace_id=trace_id)

    def background_failed(self, *, step: str, error: str) -> None:
        self._note("background_failed", step=step, error=error)

    def dead_lettered(self, count: int) -> None:
        self._note("dead_lettered", count=count)

    def dlq_backlog(self, size: int) -> None:
        self._note("dlq_backlog", size=size)

    def replayed(self, *, outcome: str) -> None:
        self._note("replayed", outcome=outcome)

    def replay_attempt(
        self, *, job_id: int | None, log_id: str, outcome: str, trace: TraceContext
    ) -> None:
        self._note("replay_attempt", job_id=job_id, log_id=log_id, outcome=outcome, trace=trace)

    def db_call(self, *, operation: str, latency_s: float, ok: bool) -> None:
        self._note("db_call", operation=operation, ok=ok)

    def db_pool(self, *, in_use: int = 0, size: int = 0) -> None:
        self._note("db_pool", in_use=in_use, size=size)


class CountedChanges:
    """``Backlog``: counts the times it was told the dead-letter queue grew."""

    def __init__(self) -> None:
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1
