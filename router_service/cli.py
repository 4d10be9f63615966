"""The ``router-service`` command."""

from __future__ import annotations

import asyncio
import importlib
import math
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click
from pydantic import ValidationError

from router_service.config.routing_file import RoutingConfig, load_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.config.settings import Settings
from router_service.domain.errors import RouterError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]).upper()
        raise click.ClickException(f"setting {name}: {first['msg']}") from exc


def _fail(exc: RouterError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(2)


# Other distributions add commands under this entry-point group: the repository's tools
# (tools/pyproject.toml) add `load`. Without them the command is simply not there.
COMMANDS_GROUP = "router_service.commands"


def _added_commands() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {entry.name: entry for entry in entry_points(group=COMMANDS_GROUP)}


class _Commands(click.Group):
    """The router's commands, some imported only when run (a server never loads the demo
    agents), plus those other installed distributions add (``COMMANDS_GROUP``)."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "demo-agents": ("router_service.devtools.demo_agents", "demo_agents_command"),
        "explain": ("router_service.commands.explain", "explain_command"),
        "backtest": ("router_service.commands.backtest", "backtest_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY, *_added_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            module, attribute = self.LAZY[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        own = super().get_command(ctx, cmd_name)
        if own is not None:
            return own  # an added command never replaces one of the router's
        entry = _added_commands().get(cmd_name)
        if entry is None:
            return None
        added = entry.load()
        if not isinstance(added, click.Command):
            raise click.ClickException(f"{entry.value} ({COMMANDS_GROUP}) is not a click command")
        return added


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="router-service")
def main() -> None:
    """Classify signals with transparent rules and route them to HTTP agents, durably."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--reload",
    is_flag=True,
    help="Development: restart on code changes and reload the routing file when it changes "
    "(sets ROUTING_WATCH=true).",
)
def serve(host: str, port: int, workers: int, reload: bool) -> None:
    """Run the HTTP server (settings come from the environment and .env).

    Prints one line on stderr once it answers: the address, the database, the routing file,
    its version and its number of agents.
    """
    from router_service.runtime import server

    made_dir = server.prepare_environment(workers, reload)
    try:
        settings = _settings()
        try:
            line = server.check_before_serving(settings, host, port)
        except RouterError as exc:
            _fail(exc)
        server.run(settings, host, port, workers, reload, line)
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


@main.command()
def migrate() -> None:
    """Create the database if needed and bring its schema to the newest revision."""
    from router_service.runtime.startup import migrate as upgrade

    settings = _settings()
    try:
        revision = upgrade(settings)
    except (OSError, TimeoutError) as exc:
        waited = f"after waiting {settings.startup_db_wait_s:g} s"
        click.echo(f"error: cannot reach the database {waited}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"database schema is at revision {revision}")


@main.command("check-config")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--online", is_flag=True, help="Also fetch and check the A2A agents' cards.")
def check_config(file: Path, online: bool) -> None:
    """Validate a routing file, then run its tests (its tests: list and FILE.tests.yaml).

    On an invalid file, name the file, the location and what is wrong (exit 2). On a failing
    test, show what was expected, what came out and why (exit 1). ``--online`` also fetches
    the A2A agents' cards and checks them against the file (exit 1 on a mismatch).
    """
    from router_service.commands.check_config import check_config_file

    try:
        status = check_config_file(file)
    except RouterError as exc:
        _fail(exc)
    if online and status == 0:
        _check_cards(load_routing_config(file))
    sys.exit(status)


@main.group()
def agents() -> None:
    """Agents of the routing file."""


@agents.command("check")
@click.option("--config", "file", type=click.Path(path_type=Path), help="Routing file.")
def agents_check(file: Path | None) -> None:
    """Fetch each A2A agent's card and check its interface and version against the file."""
    try:
        config = load_routing_config(file or _settings().routing_config)
    except RouterError as exc:
        _fail(exc)
    _check_cards(config)


def _check_cards(config: RoutingConfig) -> None:
    """A table of the A2A agents' cards; exit status 1 when one is missing or does not match."""
    from router_service.runtime.checks import check_agent_cards

    checks = asyncio.run(check_agent_cards(config.agents.values()))
    if not checks:
        click.echo("no A2A agents in the routing file")
        return
    # Plain columns, not a rich table: the rows must not wrap when piped or read by a script.
    width = max(len("agent"), *(len(c.agent) for c in checks))
    click.echo(f"{'agent':<{width}}  version  card     result")
    for check in checks:
        verdict = "ok" if check.ok else check.problem
        card = check.card_version or "-"
        click.echo(f"{check.agent:<{width}}  {check.version:<7}  {card:<7}  {verdict}")
    if not all(check.ok for check in checks):
        sys.exit(1)


def _selection_options(command: Any) -> Any:
    from router_service.commands.replay import SELECTION_OPTIONS

    for option in reversed(SELECTION_OPTIONS):
        command = option(command)
    return command


@main.command("replay-dlq")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@_selection_options
def replay_dlq(limit: int, **options: Any) -> None:
    """Replay pending dead-letter entries, with a progress bar and a summary.

    Alone, --limit replays the oldest N. With a selection (--id, --sender-id, --kind, --agent,
    --status, --since, --until, --error-contains) or --dry-run, --snapshot, --rate, --max it
    is a guarded replay: --dry-run previews it, otherwise it runs here as a replay job. --id
    alone replays exactly the named entries now, even through an open circuit (as its probe).
    """
    from router_service.commands.replay import (
        named_only,
        replay_now,
        run_selection,
        selection_from,
    )

    settings = _settings()
    try:
        routing = RoutingSource.from_file(settings.routing_config)
        flt = selection_from(options)
        if ids := named_only(flt, options):
            # Named entries alone: replayed now, through an open circuit as its probe.
            summary = asyncio.run(replay_now(settings, routing, len(ids), ids))
        elif flt is not None:
            sys.exit(asyncio.run(run_selection(settings, routing, flt, options)))
        else:
            summary = asyncio.run(replay_now(settings, routing, limit))
    except RouterError as exc:
        _fail(exc)
    click.echo(
        f"replayed {summary['replayed']}: {summary['succeeded']} succeeded, "
        f"{summary['failed']} failed, {summary['exhausted']} exhausted, "
        f"{summary['deferred']} deferred"
    )
    for reason in summary["deferred_reasons"]:
        click.echo(f"  {reason['message']}")


# A century: past it, the cutoff is before any date Python holds (it raised OverflowError).
MAX_RETENTION_DAYS = 36_500


class _Days(click.FloatRange):
    """A finite number of days in [0, MAX_RETENTION_DAYS]: FloatRange lets nan and inf in."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        days = super().convert(value, param, ctx)
        if not math.isfinite(days):
            self.fail(f"{value!r} is not a finite number of days", param, ctx)
        return days


@main.command()
@click.option("--older-than-days", type=_Days(min=0, max=MAX_RETENTION_DAYS), required=True)
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100_000))
def prune(older_than_days: float, batch: int) -> None:
    """Retention: delete finished signals (and their settled dead letters) older than N days.

    In batches, each its own short transaction, so it can run beside live traffic (cron it).
    Signals in flight or with a pending dead letter are kept. A pruned signal's idempotency key
    goes with it: the deduplication window is the retention period.
    """
    settings = _settings()
    try:
        deleted = asyncio.run(_prune(settings, older_than_days, batch))
    except RouterError as exc:
        _fail(exc)
    click.echo(f"pruned {deleted} signals older than {older_than_days:g} days")


async def _prune(settings: Settings, days: float, batch: int) -> int:
    from datetime import UTC, datetime, timedelta

    from router_service.observability.events import Telemetry
    from router_service.observability.metrics import Metrics
    from router_service.runtime.services import build_store

    cutoff = datetime.now(UTC) - timedelta(days=days)
    store = build_store(settings, Telemetry(Metrics()))
    total = 0
    try:
        after = None
        while True:  # one walk from the oldest signal: each batch starts where the last stopped
            done = await store.prune(cutoff, batch, after=after)
            total += done.deleted
            if (after := done.resume_after) is None:
                break
    finally:
        await store.close()
    return total


@main.command()
def worker() -> None:
    """Redeliver dead letters on a schedule and finish crashed replicas' signals, until stopped.

    Due entries only (a failed replay backs off), at most DLQ_WORKER_RATE entries per second;
    entries that fail MAX_REPLAYS times become exhausted. Several workers can run at once.
    """
    settings = _settings()
    try:
        routing = RoutingSource.from_file(settings.routing_config)
        asyncio.run(_work(settings, routing))
    except RouterError as exc:
        _fail(exc)


async def _work(settings: Settings, routing: RoutingSource) -> None:
    from router_service.observability.logging import configure_logging, get_logger
    from router_service.observability.metrics import Metrics
    from router_service.runtime.startup import running_services

    configure_logging(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_services(settings, routing, Metrics(), redelivery=True):
        get_logger("worker").info("worker.started", rate_per_s=settings.dlq_worker_rate)
        await stop.wait()
    get_logger("worker").info("worker.stopped")
