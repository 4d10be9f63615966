"""``router-service load``: the command, its progress bar and its table.

Registered as an entry point of the ``router_service.commands`` group (``tools/pyproject.toml``),
so the router's CLI lists it when the tools are installed, without importing them by name.
"""

from __future__ import annotations

from typing import Any

import click
import orjson
import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from loadgen.report import LoadReport
from loadgen.run import LoadOptions, run_load


def _fmt_counts(counts: dict[Any, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in counts.items()) or "-"


def report_table(report: LoadReport) -> Table:
    table = Table(title=f"load ({report.mode} loop, seed {report.seed})", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("requests", f"{report.requests} ({report.answered} answered)")
    if report.target_rate is not None:
        table.add_row("target rate", f"{report.target_rate:g} req/s")
    table.add_row("duration", f"{report.duration_s:.2f} s")
    table.add_row("throughput", f"{report.throughput_rps:.1f} req/s")
    latency = report.latency
    for label in ("p50", "p90", "p95", "p99", "max"):
        value = getattr(latency, f"{label}_ms") if latency else None
        table.add_row(f"latency {label}", "-" if value is None else f"{value:.1f} ms")
    table.add_row("status codes", _fmt_counts(report.status_codes))
    table.add_row("router status", _fmt_counts(report.router_statuses))
    table.add_row("duplicates", f"{report.duplicates_sent} sent, {report.duplicates_answered} seen")
    table.add_row("errors", _fmt_counts(report.errors))
    return table


def _run_with_progress(options: LoadOptions, show: bool) -> LoadReport:
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    )
    with progress:
        task = progress.add_task("POST /route", total=options.requests)
        return uvloop.run(run_load(options, on_result=lambda _outcome: progress.advance(task)))


@click.command("load")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Router URL.")
@click.option("--api-key", envvar="API_KEY", default="dev-key", help="X-API-Key (env API_KEY).")
@click.option("-n", "--requests", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option(
    "-c",
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections; closed-loop workers when --rate is not given.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Open loop at this many req/s (latency from the intended send time).",
)
@click.option(
    "--max-outstanding",
    default=1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Open loop: requests due beyond this many in flight are dropped (and counted).",
)
@click.option(
    "--duplicates",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of requests resending a log_id.",
)
@click.option("--seed", type=int, help="Seed for the signal mix (random when omitted).")
@click.option(
    "--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True)
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def load_command(
    url: str,
    api_key: str,
    requests: int,
    concurrency: int,
    rate: float | None,
    max_outstanding: int,
    duplicates: float,
    seed: int | None,
    timeout: float,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Send a realistic mix of signals to POST /route and report latency and outcomes."""
    options = LoadOptions(
        url=url,
        api_key=api_key,
        requests=requests,
        concurrency=concurrency,
        rate=rate,
        duplicates=duplicates,
        seed=seed,
        timeout_s=timeout,
        max_outstanding=max_outstanding,
    )
    report = _run_with_progress(options, show=not no_progress)
    if as_json:
        click.echo(orjson.dumps(report.to_dict()).decode())
    else:
        Console().print(report_table(report))
    if report.requests and not report.answered:
        raise SystemExit(1)  # nothing answered: the router is down or unreachable
