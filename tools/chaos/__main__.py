"""``python -m chaos [--quick] [--only NAME] [--out PATH] [--json PATH] [--keep-logs]``.

Exit code 0 when every scenario ran and every invariant held, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from chaos.cluster import PG_BIN, ThrowawayCluster
from chaos.procs import ROOT
from chaos.report import as_json, console, markdown
from chaos.scenarios import SCENARIOS, Outcome, Scale, Scenario, run_scenario

DEFAULT_OUT = ROOT / "docs" / "reliability.md"
# Router features the suite exercises, by the setting that switches each on.
FEATURES = {
    "lease sweeper": "sweep_interval_s",
    "drain": "drain_timeout_s",
    "DLQ worker": "dlq_worker_enabled",
    "back-pressure": "max_in_flight",
    "circuit breaker": "breaker_failures",
    "header/body timeouts": "header_timeout_s",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the subset that fits in minutes")
    parser.add_argument(
        "--only", action="append", default=[], metavar="SCENARIO", help="run only these"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="the Markdown report; a directory gets reliability.md and results.json",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep every process's output")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args(argv)


def _select(args: argparse.Namespace) -> list[Scenario]:
    names = {n for item in args.only for n in item.split(",") if n}
    unknown = names - {s.name for s in SCENARIOS}
    if unknown:
        known = ", ".join(s.name for s in SCENARIOS)
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; known: {known}")
    if names:
        return [s for s in SCENARIOS if s.name in names]
    return [s for s in SCENARIOS if s.quick or not args.quick]


def _features() -> str:
    from router_service.config.settings import Settings

    fields = Settings.model_fields
    return ", ".join(
        f"{name} {'yes' if f in fields else 'MISSING'}" for name, f in FEATURES.items()
    )


def _postgres_version() -> str:
    done = subprocess.run(
        [str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip().replace("postgres (PostgreSQL)", "PostgreSQL") or "PostgreSQL"


async def _run_all(
    scenarios: list[Scenario], cluster: ThrowawayCluster, workdir: Path, scale: Scale
) -> list[Outcome]:
    outcomes = []
    for scenario in scenarios:
        print(f"chaos: {scenario.name} ...", file=sys.stderr, flush=True)
        outcome = await run_scenario(scenario, cluster, workdir, scale)
        state = "pass" if outcome.passed else "FAIL"
        print(f"chaos: {scenario.name} {state} in {outcome.duration_s:.0f} s", file=sys.stderr)
        outcomes.append(outcome)
        if not cluster.running:  # a scenario that stops Postgres must leave it running
            cluster.start()
    return outcomes


def _terminated(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C so every ``finally`` kills its processes and deletes the cluster.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:18} {'quick' if s.quick else 'full '} {s.title}")
        return 0
    scenarios = _select(args)
    signal.signal(signal.SIGTERM, _terminated)
    out, json_out = args.out, args.json
    if out.is_dir() or not out.suffix:
        # A directory (a test's tmp dir): the report, the JSON and the process logs go there.
        out.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="run-", dir=out))
        out, json_out = out / "reliability.md", json_out or out / "results.json"
    else:
        workdir = Path(tempfile.mkdtemp(prefix="chaos-run-"))
    started = time.monotonic()
    try:
        with ThrowawayCluster() as cluster:
            outcomes = asyncio.run(_run_all(scenarios, cluster, workdir, Scale(args.quick)))
    except KeyboardInterrupt:
        # Every process was stopped and the cluster deleted on the way out.
        print(f"chaos: interrupted; process logs kept in {workdir}", file=sys.stderr)
        return 130
    meta = {
        "mode": "quick" if args.quick else ("partial" if args.only else "full"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": _cpus(),
        "python": platform.python_version(),
        "postgres": _postgres_version(),
        "duration_s": time.monotonic() - started,
        "features": _features(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(outcomes, meta))
    if json_out is not None:
        json_out.write_bytes(as_json(outcomes, meta))
    print(console(outcomes))
    passed = all(o.passed for o in outcomes)
    if args.keep_logs or not passed:
        print(f"chaos: process logs in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"chaos: report written to {out}", file=sys.stderr)
    return 0 if passed else 1


def _cpus() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
