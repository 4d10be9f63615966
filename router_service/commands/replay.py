"""``router-service replay-dlq`` with a selection: a dry run, or a job run here with a progress
bar."""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from router_service.config.routing_source import RoutingSource
from router_service.config.settings import Settings
from router_service.service.records import DeadLetterFilter, ReplayJobRecord
from router_service.service.replay_jobs import JobOrder

if TYPE_CHECKING:
    from router_service.runtime.services import Services

err = Console(stderr=True)
out = Console(highlight=False)

SELECTION_OPTIONS = (
    click.option(
        "--id", "ids", type=click.IntRange(1), multiple=True, help="An entry id (repeat)."
    ),
    click.option("--sender-id"),
    click.option("--kind"),
    click.option("--agent", help="Entries for this agent (or whole-signal entries routed to it)."),
    click.option("--status", type=click.Choice(["dead_lettered", "partial"]), help="The signal's."),
    click.option("--since", type=click.DateTime(), help="Entries created at or after (UTC)."),
    click.option("--until", type=click.DateTime(), help="Entries created before (UTC)."),
    click.option("--error-contains", help="Case-insensitive text in the entry's error."),
    click.option("--dry-run", is_flag=True, help="Count, sample and agents; send nothing."),
    click.option("--snapshot", help="A dry run's snapshot: handle exactly its set."),
    click.option("--rate", type=click.FloatRange(0.01, 10_000), help="Entries per second."),
    click.option("--max", "max_entries", type=click.IntRange(1), help="At most this many entries."),
)


def selection_from(options: dict[str, Any]) -> DeadLetterFilter | None:
    """The filter the options name, or None when none is given (a plain ``--limit`` replay)."""

    def utc(moment: datetime | None) -> datetime | None:
        return moment.replace(tzinfo=UTC) if moment is not None else None

    flt = DeadLetterFilter(
        ids=tuple(options["ids"]) or None,
        sender_id=options["sender_id"],
        kind=options["kind"],
        agent=options["agent"],
        status=options["status"],
        since=utc(options["since"]),
        until=utc(options["until"]),
        error_contains=options["error_contains"],
    )
    guarded = ("dry_run", "snapshot", "rate", "max_entries")
    if flt == DeadLetterFilter() and not any(options[k] for k in guarded):
        return None
    return flt


def named_only(flt: DeadLetterFilter | None, options: dict[str, Any]) -> tuple[int, ...]:
    """The entry ids when the options name entries and nothing else (a direct replay, not a
    job); empty otherwise."""
    guarded = any(options[k] for k in ("dry_run", "snapshot", "rate", "max_entries"))
    if flt is None or guarded or flt != DeadLetterFilter(ids=flt.ids):
        return ()
    return flt.ids or ()


async def replay_now(
    settings: Settings, routing: RoutingSource, limit: int, ids: tuple[int, ...] = ()
) -> dict[str, Any]:
    from router_service.observability.logging import configure_logging
    from router_service.observability.metrics import Metrics
    from router_service.runtime.startup import running_services

    configure_logging("WARNING")
    async with running_services(settings, routing, Metrics()) as services:
        backlog = await services.store.dlq_backlog()
        total = min(limit, backlog)
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=err,
            transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("replay", total=total)
            summary = await services.replayer.replay(
                limit=None if ids else limit,
                ids=list(ids) or None,
                on_entry=lambda s: progress.update(task, completed=s.replayed),
            )
        return summary.as_dict()


async def run_selection(
    settings: Settings, routing: RoutingSource, flt: DeadLetterFilter, options: dict[str, Any]
) -> int:
    from router_service.observability.logging import configure_logging
    from router_service.observability.metrics import Metrics
    from router_service.runtime.startup import running_services

    configure_logging("WARNING")
    async with running_services(settings, routing, Metrics()) as services:
        jobs = services.replay_jobs
        if options["dry_run"]:
            preview = await jobs.dry_run(flt, options["snapshot"])
            _print_dry_run(preview.count, preview.snapshot, preview.sample, preview.agents)
            return 0
        by = f"cli:{getpass.getuser()}"
        order = JobOrder(flt, by, options["rate"], options["max_entries"], options["snapshot"])
        job = await jobs.start(order)
        final = await _run_with_progress(services, job)
    _print_job(final or job)
    return 0 if final is not None and final.state == "done" else 1


async def _run_with_progress(services: Services, job: ReplayJobRecord) -> ReplayJobRecord | None:
    with Progress(
        TextColumn(f"replay job {job.id}"), BarColumn(), MofNCompleteColumn(), console=err,
        transient=True,
    ) as progress:  # fmt: skip
        bar = progress.add_task("replay", total=job.selected)
        task = asyncio.create_task(services.replay_jobs.run(job))
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            now = await services.store.get_replay_job(job.id)
            if now is not None:
                progress.update(bar, completed=now.progress.replayed)
        return task.result()


def _print_dry_run(count: int, snapshot: str, sample: list[Any], agents: dict[str, Any]) -> None:
    out.print(f"would replay {count} entries (dry run: nothing sent)")
    out.print(f"snapshot: {snapshot}   (pass --snapshot to handle exactly this set)")
    table = Table("agent", "entries", "circuit")
    for name, info in sorted(agents.items()):
        table.add_row(name, str(info["entries"]), info["circuit"])
    out.print(table)
    sample_table = Table("id", "log_id", "agent", "kind", "error")
    for entry in sample:
        sample_table.add_row(
            str(entry.id), entry.log_id[:16], entry.agent or "-", entry.kind, entry.error[:60]
        )
    out.print(sample_table)


def _print_job(job: ReplayJobRecord) -> None:
    p = job.progress
    click.echo(
        f"replay job {job.id} {job.state}: replayed {p.replayed} of {job.selected}: "
        f"{p.succeeded} succeeded, {p.failed} failed, {p.exhausted} exhausted, "
        f"{p.deferred} deferred (circuit open)"
    )
