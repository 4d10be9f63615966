"""Backtest: yesterday's logged signals through a candidate routing file. Classification only.

The log is read a page at a time (newest first), so memory stays bounded by the page size plus
the report, whatever the log holds: the report keeps counts per change (old kind and agents ->
new kind and agents, a bounded set) and at most ``SAMPLES`` log ids for each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from router_service.service.ports import RoutingRules, Store
from router_service.service.records import LogQuery, LogRecord

PAGE = 500
SAMPLES = 3

Route = tuple[str, tuple[str, ...]]  # kind, agents


@dataclass
class Change:
    count: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass
class BacktestReport:
    total: int = 0
    kept: int = 0
    changes: dict[tuple[Route, Route], Change] = field(default_factory=dict)
    rule_hits: Counter[str] = field(default_factory=Counter)
    never_matched: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.total - self.kept

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.changes.items(), key=lambda item: -item[1].count)
        return {
            "total": self.total,
            "kept": self.kept,
            "changed": self.changed,
            "changes": [
                {
                    "old_kind": old[0],
                    "old_agents": list(old[1]),
                    "new_kind": new[0],
                    "new_agents": list(new[1]),
                    "count": change.count,
                    "sample_log_ids": change.samples,
                }
                for (old, new), change in ordered
            ],
            "rule_hits": dict(self.rule_hits),
            "never_matched": self.never_matched,
        }


def _compare(report: BacktestReport, record: LogRecord, candidate: RoutingRules) -> None:
    found = candidate.classifier.classify(record.payload)
    report.rule_hits[found.rule] += 1
    new: Route = (found.kind, tuple(candidate.table.route_for(found.kind).agents))
    old: Route = (record.kind, tuple(record.routed_agents))
    report.total += 1
    if new == old:
        report.kept += 1
        return
    change = report.changes.setdefault((old, new), Change())
    change.count += 1
    if len(change.samples) < SAMPLES:
        change.samples.append(record.log_id)


async def backtest(
    store: Store,
    candidate: RoutingRules,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    page: int = PAGE,
    on_page: Callable[[int], None] | None = None,
) -> BacktestReport:
    """Run up to ``limit`` logged signals created in ``[since, until)`` through ``candidate``;
    ``on_page`` gets the number of signals read so far."""
    report = BacktestReport()
    cursor: str | None = None
    while limit is None or report.total < limit:
        size = page if limit is None else min(page, limit - report.total)
        found = await store.list_logs(LogQuery(since=since, until=until, limit=size, cursor=cursor))
        for record in found.items:
            _compare(report, record, candidate)
        if on_page is not None:
            on_page(report.total)
        cursor = found.next_cursor
        if cursor is None:
            break
    report.never_matched = [r.id for r in candidate.classifier.rules if report.rule_hits[r.id] == 0]
    return report
