"""The soak: ``python -m bench --soak`` (``make soak``), the router on a fresh Postgres database
under sustained load, measured window by window.

One router process (``serve --workers 1``, pinned like in the comparison) on a database created
for the run, migrated with ``router-service migrate`` and dropped at the end; one nginx agent
answering at once; every request a new signal. First the closed loop (wrk, one run per window,
back to back), then the open loop (the project's load generator, one run per window). Around
every window: the CPU time of the router and of the Postgres backends serving its database (and
of the whole Postgres server when it runs here), the router's RSS, and the size and statistics
of ``signals`` (and of ``signal_leases`` and ``idempotency_keys`` when the schema has them), and
the blocks Postgres had to read into its buffers. Only the public table names are read: nothing
here depends on how the store works.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncpg

from bench import probes
from bench.disk_probe import FlushProbe, probe_path
from bench.environment import (
    create_database,
    database_url,
    drop_database,
    loadavg,
    machine,
    migrate,
    server_statement,
    snapshot_source,
)
from bench.install import CACHE, ensure_debian_tools
from bench.openloop import run_open_loop
from bench.runner import RUN_FAILURES
from bench.targets import API_KEY, RouterTarget, TargetError, Upstream, routing_yaml
from bench.wrk import run_wrk

Phase = Literal["closed", "open"]
PHASES: tuple[Phase, ...] = ("closed", "open")
SIGNALS = "signals"
LEASES = "signal_leases"  # may not exist: then it is left out
KEYS = "idempotency_keys"  # the deduplication keys (may not exist either)


class SoakError(RuntimeError):
    """The soak could not start: migration or router start failed."""


@dataclass(frozen=True, slots=True)
class SoakPlan:
    closed_minutes: float
    open_minutes: float
    connections: int
    rate: float
    window_s: int  # one row of the report

    def windows(self, phase: Phase) -> int:
        minutes = self.closed_minutes if phase == "closed" else self.open_minutes
        return max(0, round(minutes * 60 / self.window_s))

    def level(self, phase: Phase) -> float:
        return float(self.connections) if phase == "closed" else self.rate


@dataclass(frozen=True, slots=True)
class Window:
    """One window of one phase: what the load tool saw, and what was read around it."""

    phase: Phase
    index: int  # from 1 within its phase
    level: float  # connections (closed) or req/s (open)
    ended_s: float  # since the soak's first window started
    duration_s: float = 0.0  # the load tool's run
    answered: int = 0
    ok: int = 0  # 2xx answers: the signals the CPU figures are divided by
    failed: int = 0  # non-2xx answers, socket errors, timeouts, dropped requests
    throughput_rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    router_cpu_s: float = 0.0
    db_cpu_s: float = 0.0  # the backends serving the soak's database
    server_cpu_s: float | None = None  # the whole Postgres server, when it runs on this machine
    rss_mb: float = 0.0
    other_cores: float = 0.0  # CPU the rest of the machine used meanwhile (noise)
    stolen_cores: float = 0.0  # CPU the hypervisor gave to other machines meanwhile (noise)
    io_stalled: float | None = None  # share of the window every runnable task waited on I/O
    checkpoints: int | None = None  # checkpoints the Postgres server began in the window
    blocks_read: int | None = None  # blocks Postgres read into shared_buffers for the database
    slowest_flush_ms: float | None = None  # the disk under the WAL: its slowest probe flush
    tables: dict[str, probes.TableStats] = field(default_factory=dict)  # after the window
    error: str | None = None
    failures: dict[str, int] = field(default_factory=dict)  # ``failed`` by kind

    def per_signal_us(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.ok else seconds / self.ok * 1e6


@dataclass(slots=True)
class SoakResult:
    command: str
    quick: bool
    plan: SoakPlan
    machine: list[tuple[str, str]]
    started: str = ""
    elapsed_s: float = 0.0
    baseline: dict[str, probes.TableStats] = field(default_factory=dict)  # before any load
    windows: list[Window] = field(default_factory=list)
    rows_at_end: int | None = None
    notes: list[str] = field(default_factory=list)

    def phase(self, phase: Phase) -> list[Window]:
        return [w for w in self.windows if w.phase == phase]


# --------------------------------------------------------------------------- plan


def soak_plan(args: argparse.Namespace) -> SoakPlan:
    quick = args.quick

    def single(text: str | None, default: str, what: str) -> float:
        values = [float(v) for v in (text or default).split(",") if v.strip()]
        if len(values) != 1 or values[0] <= 0:
            raise SystemExit(f"python -m bench --soak: {what} takes one positive value")
        return values[0]

    window = args.window or (10 if quick else 60)
    if window < 1:
        raise SystemExit("python -m bench --soak: --window is at least 1 second")
    return SoakPlan(
        closed_minutes=_minutes(args.closed_minutes, quick),
        open_minutes=_minutes(args.open_minutes, quick),
        connections=int(single(args.connections, "8", "--connections")),
        rate=single(args.rates, "200" if quick else "1000", "--rates"),
        window_s=int(window),
    )


def _minutes(value: float | None, quick: bool) -> float:
    if value is not None and value < 0:
        raise SystemExit("python -m bench --soak: minutes may not be negative")
    return value if value is not None else (0.5 if quick else 10.0)


# --------------------------------------------------------------------------- one window


@dataclass(frozen=True, slots=True)
class _Cpu:
    router: float
    backends: dict[int, float]
    server: float | None
    upstream: float
    machine: probes.MachineCpu
    checkpoints: int
    blocks_read: int


@dataclass(frozen=True, slots=True)
class _Load:
    duration_s: float
    answered: int
    ok: int
    failures: dict[str, int]  # by kind, only the kinds seen
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None


def _seen(counts: dict[str, int]) -> dict[str, int]:
    return {kind: n for kind, n in counts.items() if n}


class Soak:
    """The running router and what is read around each of its windows."""

    def __init__(
        self,
        plan: SoakPlan,
        router: RouterTarget,
        upstream: Upstream,
        workdir: Path,
        flush: FlushProbe | None = None,
    ) -> None:
        self.plan = plan
        self.flush = flush
        self.router = router
        self.upstream = upstream
        self.workdir = workdir
        self.url = router.database_url
        self.name = self.url.rsplit("/", 1)[1]
        self.postmaster = probes.postmaster_pid(self.url)
        self.started = time.monotonic()

    def cpu(self) -> _Cpu:
        pids, checkpoints, blocks_read = probes.backends_and_checkpoints(self.url, self.name)
        return _Cpu(
            router=probes.tree_cpu_seconds(self.router.pid),
            backends={pid: probes.cpu_seconds([pid]) for pid in pids},
            server=probes.tree_cpu_seconds(self.postmaster) if self.postmaster else None,
            upstream=probes.tree_cpu_seconds(self.upstream.process.pid),
            machine=probes.MachineCpu.now(),
            checkpoints=checkpoints,
            blocks_read=blocks_read,
        )

    def tables(self) -> dict[str, probes.TableStats]:
        return probes.table_stats(self.url, (SIGNALS, LEASES, KEYS))

    def load(self, phase: Phase) -> _Load:
        if phase == "closed":
            closed = run_wrk(
                self.router.base_url, self.router.request, self.plan.connections, self.plan.window_s
            )
            failures = {
                "non-2xx": closed.non2xx,
                "socket error (connect, read, write, timeout)": closed.socket_errors,
            }
            return _Load(closed.duration_s, closed.requests, closed.ok, _seen(failures),
                         closed.throughput_rps, closed.p50_ms, closed.p99_ms)  # fmt: skip
        opened = run_open_loop(
            self.router.base_url, API_KEY, self.plan.rate, self.plan.window_s, cwd=self.workdir
        )
        failures = {
            **{f"HTTP {code}": n for code, n in opened.status_codes.items() if code[0] != "2"},
            **opened.error_kinds,
            "dropped (never sent)": opened.dropped,
        }
        return _Load(opened.duration_s, opened.answered, opened.ok, _seen(failures),
                     opened.throughput_rps, opened.p50_ms, opened.p99_ms)  # fmt: skip

    def window(self, phase: Phase, index: int) -> Window:
        level = self.plan.level(phase)
        before = self.cpu()
        if self.flush is not None:
            self.flush.take()  # the pause between windows is not the window's
        try:
            load = self.load(phase)
        except RUN_FAILURES as exc:
            ended = time.monotonic() - self.started
            return Window(phase, index, level, ended, error=f"{type(exc).__name__}: {exc}")
        slowest_flush = None if self.flush is None else self.flush.take()
        after = self.cpu()
        ended = after.machine.at - self.started
        # A backend that opened during the window counts from zero; one that closed is lost.
        db = sum(t - before.backends.get(pid, 0.0) for pid, t in after.backends.items())
        server = None
        if after.server is not None and before.server is not None:
            server = after.server - before.server
        router = after.router - before.router
        wall = max(after.machine.at - before.machine.at, 1e-9)
        ours = router + (server if server is not None else db) + after.upstream - before.upstream
        ours += after.machine.harness_s - before.machine.harness_s
        busy = after.machine.busy_s - before.machine.busy_s
        stalled = None
        if after.machine.io_stalled_s is not None and before.machine.io_stalled_s is not None:
            stalled = (after.machine.io_stalled_s - before.machine.io_stalled_s) / wall
        return Window(
            phase, index, level, ended,
            duration_s=load.duration_s, answered=load.answered, ok=load.ok,
            failed=sum(load.failures.values()), failures=load.failures,
            throughput_rps=load.throughput_rps, p50_ms=load.p50_ms, p99_ms=load.p99_ms,
            router_cpu_s=router, db_cpu_s=db, server_cpu_s=server,
            rss_mb=probes.tree_memory(self.router.pid).rss_mb,
            other_cores=max(0.0, (busy - ours) / wall),
            stolen_cores=(after.machine.steal_s - before.machine.steal_s) / wall,
            io_stalled=stalled, checkpoints=after.checkpoints - before.checkpoints,
            blocks_read=after.blocks_read - before.blocks_read,
            slowest_flush_ms=slowest_flush,
            tables=self.tables(),
        )  # fmt: skip


# --------------------------------------------------------------------------- the run


def _log(line: str) -> None:
    print(f"soak: {line}", file=sys.stderr, flush=True)


def describe(window: Window) -> str:
    where = f"{window.phase} {window.index}"
    if window.error:
        return f"{where}: error: {window.error}"
    text = f"{where}: {window.throughput_rps:,.0f} req/s, p50 {window.p50_ms or 0:.2f} ms"
    text += f", p99 {window.p99_ms or 0:.2f} ms"
    cpu = window.per_signal_us(window.router_cpu_s)
    if cpu is not None:
        text += f", router {cpu:,.0f} µs/signal"
    signals = window.tables.get(SIGNALS)
    if signals is not None:
        text += f", signals {signals.total_bytes / 2**20:,.1f} MB"
    return text + f", RSS {window.rss_mb:.1f} MB"


def settle(url: str, when: str) -> str:
    """``sync`` and ``CHECKPOINT`` on the soak's server before a phase: what was dirtied before
    it (the previous phase's writes, or, before the first, the new database's and whatever else
    the machine wrote last) is on disk, so that its first window does not pay for it. Says what
    it did, for the report's notes."""
    started = time.monotonic()
    os.sync()
    try:
        asyncio.run(server_statement(url, "CHECKPOINT"))
    except (OSError, asyncpg.PostgresError) as exc:
        return f"no CHECKPOINT {when}: {type(exc).__name__}: {exc}"
    return f"sync and CHECKPOINT {when}: {time.monotonic() - started:.1f} s"


def _phases(soak: Soak, result: SoakResult) -> None:
    for number, phase in enumerate(p for p in PHASES if soak.plan.windows(p)):
        result.notes.append(settle(soak.url, "between the phases" if number else "before the load"))
        _log(result.notes[-1])
        for index in range(1, soak.plan.windows(phase) + 1):
            window = soak.window(phase, index)
            result.windows.append(window)
            _log(describe(window))
            assert soak.router.process is not None
            if not soak.router.process.alive():
                result.notes.append(f"the router exited: {soak.router.process.tail()}")
                return


def _start(args: argparse.Namespace, workdir: Path, url: str, upstream: Upstream) -> RouterTarget:
    routing = workdir / "routing.yaml"
    routing.write_text(routing_yaml(upstream.agent_url))
    reason = migrate(url, routing, workdir)
    if reason:
        raise SoakError(f"migrate failed: {reason}")
    router = RouterTarget(
        "router-pg", "router (Postgres)", url, routing, workers=1, log_level=args.log_level
    )
    try:
        router.start(workdir)
    except (TargetError, OSError) as exc:
        raise SoakError(f"the router did not start: {exc}") from exc
    return router


def _flush_probe(url: str, workdir: Path, result: SoakResult) -> FlushProbe | None:
    path, how = probe_path(url, workdir)
    if path is None:
        result.notes.append(f"the disk's flushes not timed: {how}")
        return None
    probe = FlushProbe(path)
    probe.start()
    result.notes.append(f"the disk's flushes timed: {how}")
    return probe


def _measure(args: argparse.Namespace, result: SoakResult, workdir: Path) -> None:
    """Database, upstream, router, the windows; every one of them ends here, whatever happens."""
    name = f"router_soak_{secrets.token_hex(4)}"
    url = database_url(args.postgres_url, name)
    result.notes.append(f"Postgres database `{name}`, created, migrated and dropped by the run")
    upstream = Upstream(workdir)
    router: RouterTarget | None = None
    flush: FlushProbe | None = None
    try:
        try:
            create_database(args.postgres_url, name)
        except (OSError, asyncpg.PostgresError) as exc:
            raise SoakError(f"could not create the database: {exc}") from exc
        router = _start(args, workdir, url, upstream)
        flush = _flush_probe(url, workdir, result)
        soak = Soak(result.plan, router, upstream, workdir, flush)
        result.baseline = soak.tables()
        _phases(soak, result)
        router.stop()  # in-flight requests finish: the rows can be counted
        result.rows_at_end = probes.count_rows(url)
    finally:
        if flush is not None:
            flush.stop()
        if router is not None:
            router.stop()
        upstream.stop()
        drop_database(args.postgres_url, name)


def run_soak(args: argparse.Namespace, write: Callable[[SoakResult], None]) -> int:
    """The whole soak; ``write`` gets the result, also a partial one after an interruption.

    The exit status says whether every window was measured, not whether the router drifted.
    """
    plan = soak_plan(args)
    ensure_debian_tools()
    started = time.monotonic()
    result = SoakResult(
        command=("python -m bench " + " ".join(sys.argv[1:])).strip(),
        quick=args.quick,
        plan=plan,
        machine=machine(args.postgres_url, peers=False),
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    workdir = Path(tempfile.mkdtemp(prefix="router-soak-"))
    interrupted: BaseException | None = None
    try:
        result.machine.append(("router_service", snapshot_source(workdir)))
        _measure(args, result, workdir)
    except SoakError as exc:
        _log(str(exc))
        return 2
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupted = exc
        result.notes.append("**interrupted**: only the windows that finished are reported")
    finally:
        if args.keep_temp:
            _log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result.elapsed_s = time.monotonic() - started
    result.machine.append(("load average at end", loadavg()))
    if result.windows:
        write(result)
    if interrupted is not None:
        raise interrupted
    expected = sum(plan.windows(phase) for phase in PHASES)
    measured = [w for w in result.windows if w.error is None]
    return 0 if expected and len(measured) == expected else 1


def raw_path() -> Path:
    return CACHE / "runs" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
