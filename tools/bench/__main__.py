"""``python -m bench``: run the whole comparison end to end and write docs/performance.md."""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.environment import (
    DEFAULT_POSTGRES,
    database_url,
    drop_database,
    loadavg,
    machine,
    migrate,
    pinned_text,
    snapshot_source,
)
from bench.install import CACHE, SetupError, ensure_debian_tools, ensure_litellm, ensure_portkey
from bench.peers import LiteLLMTarget, PortkeyTarget
from bench.raw import dump, load
from bench.report import render
from bench.results import BenchResult, TargetInfo
from bench.runner import Plan, Run, run_session
from bench.soak import SoakResult, run_soak
from bench.soak import raw_path as soak_raw_path
from bench.soak_report import dump as dump_soak
from bench.soak_report import keep_section, verdict_line, write_section
from bench.soak_report import load as load_soak
from bench.tables import correctness
from bench.targets import (
    ROOT,
    NginxTarget,
    RouterTarget,
    Target,
    Upstream,
    routing_yaml,
)

DEFAULT_OUT = ROOT / "docs" / "performance.md"
SOAK_TARGETS = ("router-pg",)


def _levels(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny durations, one repetition (the test suite)")
    add("--out", type=Path, default=DEFAULT_OUT, help="the report (default docs/performance.md)")
    add("--duration", type=int, help="seconds per closed-loop run (default 10; quick 1)")
    add("--open-duration", type=float, help="seconds per open-loop run (default 60; quick 2)")
    add("--reps", type=int, help="interleaved repetitions (default 3; quick 1)")
    add("--connections", help="closed-loop connections (default 1,8,64; quick 1,8)")
    add("--rates", help="open-loop req/s (default 500,1000,2000; quick 200)")
    add("--warmup", type=int, help="seconds of warm-up per target start (default 3; quick 1)")
    add("--window", type=float, help="first/last window of an open-loop run (default 10 s)")
    add("--peers", action="store_true", help="also the Portkey gateway and the LiteLLM proxy")
    add("--workers-compare", action="store_true", help="also the router on Postgres, 2 workers")
    add("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    add("--log-level", default="INFO", help="the router's LOG_LEVEL (default INFO, production)")
    add(
        "--retry-noisy",
        type=float,
        default=1.0,
        help="repeat a run once when other load on "
        "the machine exceeded this many cores (default 1; 0: never)",
    )
    add("--keep-temp", action="store_true", help="keep the temporary directory (configs, logs)")
    add("--from-raw", type=Path, help="render the report again from a run's raw JSON; no load")
    soak = parser.add_argument_group(
        "soak", "--soak: the router on a fresh Postgres database under sustained load, window by "
        "window; --connections, --rates and --window take one value (default 8, 1000, 60 s)",
    )  # fmt: skip
    soak.add_argument("--soak", action="store_true", help="run the soak instead of the comparison")
    soak.add_argument("--closed-minutes", type=float, help="closed loop (default 10; quick 0.5)")
    soak.add_argument("--open-minutes", type=float, help="open loop (default 10; quick 0.5)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    open_duration = args.open_duration or (2.0 if quick else 60.0)
    connections = _levels(args.connections or ("1,8" if quick else "1,8,64"))
    return Plan(
        reps=args.reps or (1 if quick else 3),
        connections=tuple(int(c) for c in connections),
        duration_s=args.duration or (1 if quick else 10),
        rates=_levels(args.rates or ("200" if quick else "500,1000,2000")),
        open_duration_s=open_duration,
        warmup_s=args.warmup if args.warmup is not None else (1 if quick else 3),
        window_s=args.window or min(10.0, open_duration / 2),
        soak_targets=SOAK_TARGETS,
        retry_noisy_cores=args.retry_noisy,
    )


# --------------------------------------------------------------------------- targets


def build_targets(
    args: argparse.Namespace,
    upstream: Upstream,
    workdir: Path,
    database: str,
    result: BenchResult,
) -> list[Target]:
    """The targets that can run; the routers' databases are migrated here."""
    routing = workdir / "routing.yaml"
    routing.write_text(routing_yaml(upstream.agent_url))
    targets: list[Target] = [NginxTarget(None), NginxTarget(upstream.port)]
    placements = {
        "nginx-direct": pinned_text("1 worker, pinned to CPU 1"),
        "nginx-proxy": pinned_text("1 worker, pinned to CPU 1, keep-alive to the upstream"),
    }
    pg_url = database_url(args.postgres_url, database)
    result.notes.append(f"Postgres database `{database}`, created and dropped by the run")
    pg_reason = migrate(pg_url, routing, workdir)
    sqlite_url = f"sqlite:///{workdir / 'router.db'}"
    sqlite_reason = migrate(sqlite_url, routing, workdir)
    level = args.log_level
    routers = [
        ("router-pg", "router (Postgres)", pg_url, 1, pg_reason),
        ("router-sqlite", "router (SQLite)", sqlite_url, 1, sqlite_reason),
    ]
    if args.workers_compare:
        routers.append(("router-pg-w2", "router (Postgres, 2 workers)", pg_url, 2, pg_reason))
    not_run: dict[str, str] = {}
    for key, label, url, workers, reason in routers:
        targets.append(RouterTarget(key, label, url, routing, workers=workers, log_level=level))
        where = pinned_text("pinned to CPU 1") if workers == 1 else "not pinned"
        placements[key] = f"`serve --workers {workers}`, {where}"
        if reason:
            not_run[key] = f"migrate failed: {reason}"
    if args.peers:
        for peer, make in ((ensure_portkey(), PortkeyTarget), (ensure_litellm(), LiteLLMTarget)):
            if peer.entry is None:
                result.targets.append(TargetInfo(peer.name, peer.name, "peer", "", peer.reason))
                continue
            targets.append(make(peer, upstream.openai_base))
            placements[peer.name] = pinned_text("one process, pinned to CPU 1")
    for target in targets:
        info = TargetInfo(target.key, target.label, target.role, placements[target.key])
        result.targets.append(dataclasses.replace(info, not_run=not_run.get(target.key)))
    return [t for t in targets if t.key not in not_run]


# --------------------------------------------------------------------------- main


def _describe(run: Run) -> str:
    if run.error:
        return f"error: {run.error}"
    figures = run.closed or run.open
    assert figures is not None
    text = f"{figures.throughput_rps:,.0f} req/s, p50 {figures.p50_ms or 0:.2f} ms"
    text += f", p99 {figures.p99_ms or 0:.2f} ms"
    if run.server and run.server.cpu_us_per_request:
        text += f", {run.server.cpu_us_per_request:,.0f} µs CPU/req"
    if run.server and run.server.check:
        text += ", check " + ("ok" if run.server.check.passed else "FAILED")
    return text


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: processes stop, DB dropped


def run(args: argparse.Namespace) -> int:
    plan = make_plan(args)
    ensure_debian_tools()
    started = time.monotonic()
    command = "python -m bench " + " ".join(sys.argv[1:])
    result = BenchResult(
        command=command.strip(),
        quick=args.quick,
        plan=plan,
        machine=machine(args.postgres_url, args.peers),
        targets=[],
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    workdir = Path(tempfile.mkdtemp(prefix="router-bench-"))
    result.machine.append(("router_service", snapshot_source(workdir)))
    upstream = Upstream(workdir)
    result.plan = plan = dataclasses.replace(plan, upstream_pid=upstream.process.pid)
    database = f"router_bench_{secrets.token_hex(4)}"
    interrupted: BaseException | None = None
    try:
        try:
            targets = build_targets(args, upstream, workdir, database, result)
            for rep in range(1, plan.reps + 1):
                for target in targets:
                    session = run_session(target, rep, plan, workdir)
                    result.sessions.append(session)
                    _log(f"rep {rep}/{plan.reps} {target.key}: " + (session.error or "done"))
                    for r in session.runs:
                        _log(f"  {r.mode} {r.level:g}: {_describe(r)}")
        except (KeyboardInterrupt, SystemExit) as exc:
            # Stopped: the sessions that finished still make a (partial) report.
            interrupted = exc
            result.notes.append("**interrupted**: only the sessions that finished are reported")
        finally:
            drop_database(args.postgres_url, database)
    finally:
        upstream.stop()
        if args.keep_temp:
            _log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result.elapsed_s = time.monotonic() - started
    result.machine.append(("load average at end", loadavg()))
    write_report(args.out, render(result))
    raw = CACHE / "runs" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    dump(result, raw)
    _log(f"wrote {args.out} (raw figures: {raw})")
    if interrupted is not None:
        raise interrupted
    passed, _ = correctness(result)
    core_failed = [s for s in result.sessions if s.error and s.target.startswith(("router", "ng"))]
    return 0 if passed and not core_failed else 1


def write_report(path: Path, text: str) -> None:
    """Write the comparison's report, keeping the soak's section of the file it replaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(keep_section(path.read_text(), text) if path.exists() else text)


def write_soak(out: Path, result: SoakResult) -> None:
    write_section(out, result)
    raw = soak_raw_path()
    dump_soak(result, raw)
    print(verdict_line(result), flush=True)
    _log(f"wrote the soak section of {out} (raw figures: {raw})")


def soak(args: argparse.Namespace) -> int:
    if args.from_raw:
        result = load_soak(args.from_raw)
        write_section(args.out, result)
        print(verdict_line(result), flush=True)
        _log(f"wrote the soak section of {args.out} from {args.from_raw}")
        return 0
    return run_soak(args, lambda result: write_soak(args.out, result))


def _log(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args(argv)
    if args.soak:
        try:
            return soak(args)
        except SetupError as exc:
            _log(str(exc))
            return 2
    if args.from_raw:
        write_report(args.out, render(load(args.from_raw)))
        _log(f"wrote {args.out} from {args.from_raw}")
        return 0
    try:
        return run(args)
    except SetupError as exc:
        _log(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
