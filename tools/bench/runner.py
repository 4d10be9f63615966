"""One session of one target: start, warm up, closed loop, open loop, soak, stop.

Around every run the server's CPU time and memory are read from /proc; for the router also its
``/metrics`` histograms, the CPU time of the Postgres backends serving it, and the rows of
``signals``, which must match the 2xx answers (the correctness check).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncpg

from bench import probes
from bench.openloop import OpenLoopResult, run_open_loop
from bench.targets import API_KEY, RouterTarget, Target, TargetError
from bench.wrk import WrkError, WrkResult, run_wrk

Mode = Literal["closed", "open", "soak"]
# What one run may raise without ending the session: the load tools, the probes, the databases.
RUN_FAILURES = (
    WrkError,
    RuntimeError,
    OSError,
    ValueError,
    subprocess.SubprocessError,
    sqlite3.Error,
    asyncpg.PostgresError,
)
OVERHEAD = "router_overhead_seconds"
LATENCY = "router_latency_seconds"


@dataclass(frozen=True, slots=True)
class Plan:
    reps: int
    connections: tuple[int, ...]
    duration_s: int  # each closed-loop run
    rates: tuple[float, ...]
    open_duration_s: float  # each open-loop run
    warmup_s: int
    window_s: float  # first/last window of an open-loop run
    soak_targets: tuple[str, ...]  # keys of the targets that get a second run at the top rate
    upstream_pid: int | None = None  # its CPU is the benchmark's, not noise
    retry_noisy_cores: float = 0.0  # repeat a run once when other load exceeded this (0: never)


@dataclass(frozen=True, slots=True)
class Check:
    """Rows written during a run against the 2xx answers of that run."""

    rows: int
    ok: int
    # Sent without a 2xx: in flight at the stop, a socket error, or an error answer that may come
    # after the claim (503 database_unavailable under overload: the row exists and the sweeper
    # finishes it), so its row may or may not be there.
    unanswered: int
    duplicates: int
    passed: bool

    @classmethod
    def of(cls, rows: int, ok: int, unanswered: int, duplicates: int) -> Check:
        # A request in flight when the load stopped may or may not have been recorded.
        passed = ok <= rows <= ok + unanswered and duplicates == 0
        return cls(rows, ok, unanswered, duplicates, passed)


@dataclass(frozen=True, slots=True)
class ServerSample:
    """The server beside one run; the router-only fields are None for the other targets."""

    cpu_s: float
    requests: int  # what the CPU time is divided by
    hwm_mb: float
    rss_before_mb: float
    rss_mb: float
    other_cores: float = 0.0  # CPU the rest of the machine used meanwhile, in cores (noise)
    steal_cores: float = 0.0  # CPU the hypervisor took meanwhile, in cores (noise)
    db_cpu_s: float | None = None
    overhead_p50_ms: float | None = None
    overhead_p95_ms: float | None = None
    overhead_samples: int | None = None
    server_p50_ms: float | None = None
    check: Check | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.cpu_s / self.requests * 1e6 if self.requests else None

    @property
    def db_cpu_us_per_request(self) -> float | None:
        if self.db_cpu_s is None or not self.requests:
            return None
        return self.db_cpu_s / self.requests * 1e6


@dataclass(frozen=True, slots=True)
class Run:
    target: str
    rep: int
    mode: Mode
    level: float  # connections (closed) or req/s (open, soak)
    closed: WrkResult | None = None
    open: OpenLoopResult | None = None
    server: ServerSample | None = None
    error: str | None = None


@dataclass(slots=True)
class Session:
    """The runs of one target in one repetition, or why it could not start."""

    target: str
    rep: int
    runs: list[Run] = field(default_factory=list)
    discarded: list[Run] = field(default_factory=list)  # noisier attempts of repeated runs
    error: str | None = None
    started_in_s: float = 0.0


class _Beside:
    """Readings taken before a run, turned into a ServerSample after it."""

    def __init__(self, target: Target, upstream_pid: int | None) -> None:
        self.target = target
        self.upstream_pid = upstream_pid
        self.router = target if isinstance(target, RouterTarget) else None
        self.text = probes.scrape(target.base_url) if self.router else ""
        # Settled: requests in flight when the previous load (or the warm-up) stopped finish.
        self.rows = probes.settled_rows(self.router.database_url) if self.router else 0
        self.db = self._db_cpu()
        self.memory = probes.tree_memory(target.pid)
        self.upstream = self._upstream_cpu()
        self.machine = probes.MachineCpu.now()
        self.cpu = probes.tree_cpu_seconds(target.pid)

    def _db_cpu(self) -> dict[int, float]:
        if self.router is None or not self.router.database_url.startswith("postgres"):
            return {}
        url = self.router.database_url
        pids = probes.postgres_backends(url, url.rsplit("/", 1)[1])
        return {pid: probes.cpu_seconds([pid]) for pid in pids}

    def _upstream_cpu(self) -> float:
        return probes.tree_cpu_seconds(self.upstream_pid) if self.upstream_pid else 0.0

    def after(self, ok: int, answered: int, unanswered: int, duplicates: int) -> ServerSample:
        # Rows first: requests still in flight when the load stopped finish (and burn CPU).
        rows = probes.settled_rows(self.router.database_url) - self.rows if self.router else 0
        cpu = probes.tree_cpu_seconds(self.target.pid) - self.cpu
        machine = probes.MachineCpu.now()
        upstream = self._upstream_cpu() - self.upstream
        memory = probes.tree_memory(self.target.pid)
        db_after = self._db_cpu()
        db_cpu = sum(t - self.db.get(pid, 0.0) for pid, t in db_after.items())
        wall = max(machine.at - self.machine.at, 1e-9)
        ours = cpu + upstream + db_cpu + machine.harness_s - self.machine.harness_s
        sample = ServerSample(
            cpu_s=cpu,
            requests=max(rows, answered),
            hwm_mb=memory.hwm_mb,
            rss_before_mb=self.memory.rss_mb,
            rss_mb=memory.rss_mb,
            other_cores=max(0.0, (machine.busy_s - self.machine.busy_s - ours) / wall),
            steal_cores=(machine.steal_s - self.machine.steal_s) / wall,
        )
        if self.router is None:
            return sample
        text = probes.scrape(self.target.base_url)
        overhead = self._delta(text, OVERHEAD)
        return dataclasses.replace(
            sample,
            # Only when the same backends served the whole run: a closed one took its CPU along.
            db_cpu_s=db_cpu if db_after and db_after.keys() == self.db.keys() else None,
            overhead_p50_ms=_ms(probes.histogram_quantile(0.5, overhead)),
            overhead_p95_ms=_ms(probes.histogram_quantile(0.95, overhead)),
            overhead_samples=round(max(overhead.values(), default=0.0)),
            server_p50_ms=_ms(probes.histogram_quantile(0.5, self._delta(text, LATENCY))),
            check=Check.of(rows, ok, unanswered, duplicates),
        )

    def _delta(self, text: str, name: str) -> probes.Buckets:
        """The histogram's buckets for this run alone: after minus before."""
        before = probes.histogram_buckets(self.text, name)
        return probes.bucket_delta(probes.histogram_buckets(text, name), before)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _closed(target: Target, rep: int, connections: int, plan: Plan) -> Run:
    beside = _Beside(target, plan.upstream_pid)
    result = run_wrk(target.base_url, target.request, connections, plan.duration_s)
    not_ok = result.unanswered + result.non2xx
    server = beside.after(result.ok, result.requests, not_ok, result.duplicates)
    return Run(target.key, rep, "closed", connections, closed=result, server=server)


def _open(target: Target, rep: int, mode: Mode, rate: float, plan: Plan, workdir: Path) -> Run:
    beside = _Beside(target, plan.upstream_pid)
    result = run_open_loop(
        target.base_url, API_KEY, rate, plan.open_duration_s, window_s=plan.window_s, cwd=workdir
    )
    not_ok = result.errors + result.answered - result.ok
    server = beside.after(result.ok, result.answered, not_ok, result.duplicates)
    return Run(target.key, rep, mode, rate, open=result, server=server)


def _attempt(target: Target, rep: int, mode: Mode, level: float, plan: Plan, workdir: Path) -> Run:
    """One run; a failure is recorded in the run, and the session goes on."""
    try:
        if mode == "closed":
            return _closed(target, rep, int(level), plan)
        return _open(target, rep, mode, level, plan, workdir)
    except RUN_FAILURES as exc:
        return Run(target.key, rep, mode, level, error=f"{type(exc).__name__}: {exc}")


def _noise(run: Run) -> float:
    return run.server.other_cores if run.server else 0.0


def _measure(
    session: Session, target: Target, mode: Mode, level: float, plan: Plan, workdir: Path
) -> None:
    """One run, repeated once when other work on the machine took a large share of it; the
    quieter attempt is kept and the other one is recorded as discarded."""
    run = _attempt(target, session.rep, mode, level, plan, workdir)
    if plan.retry_noisy_cores and _noise(run) > plan.retry_noisy_cores:
        again = _attempt(target, session.rep, mode, level, plan, workdir)
        keep, drop = (again, run) if _noise(again) < _noise(run) else (run, again)
        session.discarded.append(drop)
        run = keep
    session.runs.append(run)


def run_session(target: Target, rep: int, plan: Plan, workdir: Path) -> Session:
    """Every run of one target in one repetition; the target is stopped whatever happens."""
    session = Session(target.key, rep)
    started = time.monotonic()
    try:
        target.start(workdir)
    except (TargetError, OSError) as exc:
        session.error = str(exc)
        return session
    session.started_in_s = time.monotonic() - started
    try:
        if plan.warmup_s > 0:
            run_wrk(target.base_url, target.request, max(plan.connections), plan.warmup_s)
        for connections in plan.connections:
            _measure(session, target, "closed", connections, plan, workdir)
        if target.open_loop:
            for rate in plan.rates:
                _measure(session, target, "open", rate, plan, workdir)
            if target.key in plan.soak_targets and plan.rates:
                _measure(session, target, "soak", max(plan.rates), plan, workdir)
    except WrkError as exc:
        session.error = f"warm-up failed: {exc}"
    finally:
        target.stop()
    return session
