"""What a benchmark run holds: the plan, the targets, every session; the statistics over them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.runner import Mode, Plan, Run, Session

TOP_RATE = 2000.0
# The targets for the router.
P50_AT_ONE_MS = 1.0
OPEN_P50_MS = 5.0
OPEN_P99_MS = 25.0
DRIFT_LIMIT = 0.20
CPU_US = 350.0
RPS_AT_8 = 2500.0  # closed loop, 8 connections
RSS_MB = 80.0
RSS_FLAT = 0.05  # "flat": VmRSS grows by at most 5 % over the second run


@dataclass(frozen=True, slots=True)
class TargetInfo:
    key: str
    label: str
    role: str
    placement: str  # how it was run: CPU pinning, workers
    not_run: str | None = None


@dataclass(slots=True)
class BenchResult:
    command: str
    quick: bool
    plan: Plan
    machine: list[tuple[str, str]]
    targets: list[TargetInfo]
    sessions: list[Session] = field(default_factory=list)
    started: str = ""
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def runs(self, target: str, mode: Mode, level: float | None = None) -> list[Run]:
        return [
            run
            for session in self.sessions
            if session.target == target
            for run in session.runs
            if run.mode == mode and run.error is None and (level is None or run.level == level)
        ]

    def label(self, key: str) -> str:
        return next((t.label for t in self.targets if t.key == key), key)

    def ran(self, key: str) -> bool:
        return any(s.target == key and s.error is None for s in self.sessions)


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        data = [v for v in values if v is not None]
        if not data:
            return None
        return cls(statistics.median(data), min(data), max(data), len(data))
