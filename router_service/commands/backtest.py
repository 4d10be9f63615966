"""``router-service backtest``: what a candidate routing file would do to the logged traffic."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from router_service.config.routing_file import RoutingConfig, load_routing_config
from router_service.config.settings import Settings
from router_service.domain.errors import RouterError
from router_service.service.backtest import PAGE, BacktestReport, backtest

err = Console(stderr=True)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> datetime:
    """``24h``, ``30m``, ``7d``, ``90s``: that long ago."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise click.BadParameter("use a duration like 30m, 24h or 7d", param_hint="--since")
    amount, unit = float(match[1]), _UNITS[match[2]]
    try:
        return datetime.now(UTC) - timedelta(**{unit: amount})
    except OverflowError:  # before year 1, or past what a timedelta holds
        raise click.BadParameter("too far back", param_hint="--since") from None


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def print_report(report: BacktestReport, candidate: Path) -> None:
    share = f" ({report.kept / report.total:.1%})" if report.total else ""
    out.print(f"backtest of {candidate} on {report.total} logged signals (nothing sent)")
    out.print(f"kept their route: {report.kept}{share}; would change: {report.changed}")
    if report.changes:
        table = Table(
            "old kind -> new kind", "old agents -> new agents", "signals", "sample log_ids"
        )
        for item in report.as_dict()["changes"]:
            table.add_row(
                f"{item['old_kind']} -> {item['new_kind']}",
                f"{','.join(item['old_agents'])} -> {','.join(item['new_agents'])}",
                str(item["count"]),
                " ".join(i[:16] for i in item["sample_log_ids"]),
            )
        out.print(table)
    if report.never_matched:
        out.print(f"rules that never matched: {', '.join(report.never_matched)}")
    else:
        out.print("every rule matched at least once")


@click.command("backtest")
@click.argument("new_file", type=click.Path(path_type=Path))
@click.option("--since", "since_text", help="How far back: 30m, 24h, 7d.")
@click.option("--from", "start", type=click.DateTime(), help="From this time (UTC).")
@click.option("--to", "end", type=click.DateTime(), help="Up to this time (UTC).")
@click.option("--limit", type=click.IntRange(1), help="At most this many signals (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backtest_command(
    new_file: Path,
    since_text: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Run logged signals through NEW_FILE: how many keep their route, what would change
    (old kind and agents -> new, with counts and sample log_ids), which rules never match.

    Classification only: nothing is sent. The log is read in pages of 500, so memory stays
    bounded whatever its size.
    """
    from router_service.cli import _settings

    if since_text and start:
        raise click.UsageError("give --since or --from, not both")
    since = parse_since(since_text) if since_text else _utc(start)
    until = _utc(end)
    if since is not None and until is not None and since >= until:
        # The window is [since, until): an empty one would report 0 signals, as if none came.
        hint = "--since" if since_text else "--from"
        raise click.BadParameter("must be before --to (the window is empty)", param_hint=hint)
    try:
        candidate = load_routing_config(new_file)
        report = asyncio.run(_run(_settings(), candidate, since, until, limit))
    except RouterError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report, new_file)


async def _run(
    settings: Settings,
    candidate: RoutingConfig,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
) -> BacktestReport:
    from router_service.observability.events import Telemetry
    from router_service.observability.metrics import Metrics
    from router_service.runtime.services import build_store

    store = build_store(settings, Telemetry(Metrics()))
    try:
        with Progress(
            SpinnerColumn(), TextColumn("read {task.completed} signals"), console=err,
            transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("backtest", total=limit)
            return await backtest(
                store,
                candidate,
                since=since,
                until=until,
                limit=limit,
                page=PAGE,
                on_page=lambda done: progress.update(task, completed=done),
            )
    finally:
        await store.close()
