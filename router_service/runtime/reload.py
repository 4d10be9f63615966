"""Reloading the routing file on demand (``POST /admin/reload``, SIGHUP), with a report.

The routing source swaps versions atomically and refuses a file that is invalid or fails its own
tests (``routing_source.py``); this step says what happened, to the caller, the log (an audit
event with the key's name, never the key) and a metric. Under ``serve --workers N`` a reload
asked of one worker over HTTP is passed on to the others through the supervisor, which forwards
SIGHUP to every worker (``runtime/supervisor.py``); a reload that came by signal is never passed on,
so a signal cannot bounce between processes. The routing file's watcher (``ROUTING_WATCH``) reports
what it changed or refused here too, so the metric and ``/health`` count every way a file is read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from router_service.config.routing_source import Reload, RoutingSource, RoutingVersion


@dataclass(frozen=True, slots=True)
class ReloadReport:
    outcome: str  # reloaded, unchanged, refused
    trigger: str  # api, sighup, watch
    by: str | None  # the API key's name (None for a signal)
    active: RoutingVersion
    previous_version: str
    error: str | None
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "trigger": self.trigger,
            "by": self.by,
            "version": self.active.version,
            "previous_version": self.previous_version,
            "loaded_at": self.active.loaded_at.isoformat(),
            "error": self.error,
            "at": self.at.isoformat(),
            "pid": os.getpid(),
        }


class ReloadEvents(Protocol):
    def routing_reloaded(self, report: ReloadReport) -> None: ...


class RoutingReloader:
    def __init__(
        self,
        source: RoutingSource,
        events: ReloadEvents,
        notify_peers: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._events = events
        self._notify_peers = notify_peers
        self.last: ReloadReport | None = None

    async def reload(self, *, trigger: str, by: str | None = None) -> ReloadReport:
        # Reading, parsing and testing the file is blocking work: off the event loop. The
        # previous version comes with the result, read under the source's lock with the swap.
        result = await asyncio.to_thread(self._source.reload)
        report = self.record(result, trigger=trigger, by=by)
        if trigger != "sighup" and self._notify_peers is not None:
            self._notify_peers()
        return report

    def record(self, result: Reload, *, trigger: str, by: str | None = None) -> ReloadReport:
        """Report a reload: ``last`` (``/health``), the metric, and the audit event. The
        routing file's watcher reloads by itself and reports here with ``trigger="watch"``."""
        if result.error is not None:
            outcome = "refused"
        else:
            outcome = "reloaded" if result.changed else "unchanged"
        report = ReloadReport(
            outcome=outcome,
            trigger=trigger,
            by=by,
            active=result.active,
            previous_version=result.previous.version,
            error=result.error.message if result.error is not None else None,
            at=datetime.now(UTC),
        )
        self.last = report
        self._events.routing_reloaded(report)
        return report
