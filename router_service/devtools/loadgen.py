"""Load generator for ``POST /route``: a realistic signal mix, closed or open loop.

Closed loop (default): ``concurrency`` workers each send the next request as soon as their
previous one is answered, so the offered load adapts to the server.

Open loop (``--rate``): request *i* has the intended send time ``start + i / rate`` whatever the
server does. Latency is measured from that intended time, so a stalled server shows up as the
latency its clients would really see (no coordinated omission). At most ``max_outstanding``
requests are in flight; a request due while that many are pending is counted as ``dropped``.

Only answered requests have a latency: timeouts, connection failures and drops are errors.
The pure parts (percentiles, schedule, signal mix, summary) need no event loop.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import click
import orjson
import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from router_service.adapters.connection_pool import ConnectionPool
from router_service.adapters.http1 import TransportError, parse_target

PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0)
# (kind, relative weight): the intended kind of each generated signal.
KIND_WEIGHTS: Final = (
    ("policy", 15),
    ("billing", 25),
    ("support", 25),
    ("emergency", 5),
    ("feedback", 15),
    ("unclassified", 15),
)
# Neutral filler: none of these words should decide a classification on its own.
_WORDS: Final = (
    *("account", "order", "delivery", "region", "customer", "service", "update", "team"),
    *("status", "network", "portal", "system", "report", "review", "contract", "schedule"),
    *("document", "process", "weekly", "data", "warehouse", "shipment", "profile", "settings"),
    *("mobile", "desktop", "quarter", "morning", "store", "colleague", "device", "version"),
)
_ROUTE_PATH: Final = "/route"


# --------------------------------------------------------------------------- percentiles


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted data: the smallest value >= q% of the data."""
    if not sorted_values:
        raise ValueError("percentile of no data")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    # Decimal keeps 7% of 100 at rank 7; as floats 7 / 100 * 100 is 7.000000000000001 -> rank 8.
    rank = math.ceil(Decimal(repr(q)) * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> LatencySummary | None:
        """None for no data: a summary never invents a latency."""
        if not latencies_ms:
            return None
        data = sorted(latencies_ms)
        p50, p90, p95, p99 = (percentile(data, q) for q in PERCENTILES)
        return cls(len(data), p50, p90, p95, p99, data[-1])


# --------------------------------------------------------------------------- schedule


def open_loop_schedule(n: int, rate: float) -> list[float]:
    """Intended send offsets in seconds from the start: evenly spaced at ``rate`` per second."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive finite number, got {rate}")
    return [i / rate for i in range(n)]


# --------------------------------------------------------------------------- signal mix


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request body; ``duplicate_of`` is the index of the original it resends."""

    index: int
    kind: str
    body: dict[str, Any]
    duplicate_of: int | None = None

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _text_size(rng: random.Random) -> int:
    """Mostly short messages, some paragraphs, a few attachments-worth of text."""
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(20, 300)
    if roll < 0.95:
        return rng.randint(300, 1500)
    return rng.randint(1500, 6000)


def _payload(kind: str, rng: random.Random) -> dict[str, Any]:
    filler = _text(rng, _text_size(rng))
    if kind == "policy":
        ref = f"POL-{rng.randint(100, 999)}"
        return {"message": f"Question about policy {ref}: {filler}", "policy_id": ref}
    if kind == "billing":
        invoice = f"INV-{rng.randint(2023, 2026)}-{rng.randint(1, 99999):05d}"
        amount = round(rng.uniform(5, 5000), 2)
        return {
            "message": f"Invoice {invoice} was charged twice. {filler}",
            "invoice_number": invoice,
            "amount": amount,
            "currency": rng.choice(["EUR", "USD", "GBP"]),
        }
    if kind == "support":
        return {"message": f"I need help: cannot log in to my account. {filler}", "channel": "web"}
    if kind == "emergency":
        site = rng.choice(["plant-3", "dc-east", "store-112", "hq"])
        return {"message": f"URGENT emergency at {site}: {filler}", "severity": "critical"}
    if kind == "feedback":
        return {"message": f"Feedback: {filler}", "rating": rng.randint(1, 5)}
    return {"note": filler, "ref": rng.randint(1, 10**6)}


def signal_mix(
    n: int,
    *,
    seed: int,
    duplicates: float = 0.05,
    run_id: str = "run",
    senders: int = 50,
    start: datetime | None = None,
) -> list[PlannedRequest]:
    """``n`` request bodies, the same for the same arguments.

    Exactly ``round(n * duplicates)`` of them (never the first) resend an earlier original
    byte for byte, explicit ``log_id`` included, as a client retry would.
    """
    if not 0 <= duplicates < 1:
        raise ValueError(f"duplicates must be in [0, 1), got {duplicates}")
    rng = random.Random(seed)
    base = start or datetime(2025, 1, 1, tzinfo=UTC)
    duplicate_slots = set(rng.sample(range(1, n), min(round(n * duplicates), max(n - 1, 0))))
    kinds, weights = [k for k, _ in KIND_WEIGHTS], [w for _, w in KIND_WEIGHTS]
    originals: list[int] = []
    plan: list[PlannedRequest] = []
    for index in range(n):
        if index in duplicate_slots:
            source = plan[rng.choice(originals)]
            plan.append(PlannedRequest(index, source.kind, source.body, source.index))
            continue
        kind = rng.choices(kinds, weights)[0]
        moment = base + timedelta(microseconds=index)
        body = {
            "log_id": f"load-{run_id}-{index:07d}",
            "sender_id": f"sender-{rng.randrange(senders):03d}",
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "payload": _payload(kind, rng),
            "metadata": {"source": "loadgen", "run_id": run_id, "seq": index},
        }
        originals.append(index)
        plan.append(PlannedRequest(index, kind, body))
    return plan


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What happened to one request; ``latency_ms`` is set only when an answer arrived."""

    index: int
    duplicate_sent: bool
    http_status: int | None = None
    router_status: str | None = None
    duplicate_answer: bool = False
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LoadReport:
    mode: str
    requests: int
    answered: int
    duration_s: float
    throughput_rps: float
    latency: LatencySummary | None
    status_codes: dict[int, int]
    router_statuses: dict[str, int]
    duplicates_sent: int
    duplicates_answered: int
    errors: dict[str, int]
    seed: int
    target_rate: float | None = None

    @property
    def dropped(self) -> int:
        return self.errors.get("dropped", 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status_codes"] = {str(code): n for code, n in self.status_codes.items()}
        return data


def summarise(
    outcomes: Sequence[RequestOutcome],
    duration_s: float,
    *,
    mode: str,
    seed: int,
    target_rate: float | None = None,
) -> LoadReport:
    """Fold per-request outcomes into the report (pure, so it is tested without a server)."""
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    answered = [o for o in outcomes if o.http_status is not None]
    sent = [o for o in outcomes if o.error != "dropped"]
    return LoadReport(
        mode=mode,
        requests=len(outcomes),
        answered=len(answered),
        duration_s=duration_s,
        throughput_rps=len(answered) / duration_s if duration_s > 0 else 0.0,
        latency=LatencySummary.of(latencies),
        status_codes=dict(
            sorted(Counter(o.http_status for o in answered if o.http_status).items())
        ),
        router_statuses=dict(Counter(o.router_status for o in answered if o.router_status)),
        duplicates_sent=sum(o.duplicate_sent for o in sent),
        duplicates_answered=sum(o.duplicate_answer for o in answered),
        errors=dict(Counter(o.error for o in outcomes if o.error)),
        seed=seed,
        target_rate=target_rate,
    )


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True, slots=True)
class LoadOptions:
    url: str = "http://127.0.0.1:8000"
    api_key: str = "dev-key"
    requests: int = 1000
    concurrency: int = 16
    rate: float | None = None
    duplicates: float = 0.05
    seed: int | None = None
    timeout_s: float = 10.0
    max_outstanding: int = 1024
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))


def route_url(url: str) -> str:
    """Accept the router's base URL or its ``/route`` URL."""
    url = url.rstrip("/")
    return url if url.endswith(_ROUTE_PATH) else url + _ROUTE_PATH


def _error_name(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__


class _Client:
    """POSTs to the router over keep-alive connections: the router's own lean HTTP/1.1 client
    (a few tens of µs per request), so the generator measures the router rather than itself."""

    def __init__(self, url: str, headers: dict[str, str], connections: int, timeout_s: float):
        self._target = parse_target(url)
        self._headers = headers
        self._timeout_s = timeout_s
        self._pool = ConnectionPool(
            max_connections=connections,
            max_idle_per_origin=connections,
            idle_timeout_s=60.0,
            max_body=64 * 1024 * 1024,
        )

    async def post(self, body: bytes) -> tuple[int, bytes]:
        request = self._target.encode(body, self._headers)
        async with asyncio.timeout(self._timeout_s):
            response = await self._pool.exchange(self._target, request)
        return response.status, response.body

    async def close(self) -> None:
        await self._pool.close()


def _read_answer(request: PlannedRequest, status: int, raw: bytes) -> RequestOutcome:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    base = RequestOutcome(request.index, request.is_duplicate, http_status=status)
    if not isinstance(answer, dict):
        return replace(base, error="non_json_body")
    router_status = answer.get("status")
    return replace(
        base,
        router_status=router_status if isinstance(router_status, str) else None,
        duplicate_answer=answer.get("duplicate") is True,
    )


async def _send(
    client: _Client,
    request: PlannedRequest,
    started: float,
) -> RequestOutcome:
    """POST one body; latency runs from ``started`` (a ``perf_counter`` value)."""
    try:
        status, raw = await client.post(orjson.dumps(request.body))
    except (TransportError, TimeoutError, OSError) as exc:
        return RequestOutcome(request.index, request.is_duplicate, error=_error_name(exc))
    latency_ms = (time.perf_counter() - started) * 1000
    return replace(_read_answer(request, status, raw), latency_ms=latency_ms)


async def _closed_loop(
    client: _Client,
    plan: list[PlannedRequest],
    concurrency: int,
    record: Callable[[RequestOutcome], None],
) -> None:
    pending: Iterator[PlannedRequest] = iter(plan)

    async def worker() -> None:
        # One shared iterator: each worker takes the next request when its last one is done.
        for request in pending:
            record(await _send(client, request, time.perf_counter()))

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(plan))):
            group.create_task(worker())


async def _open_loop(
    client: _Client,
    plan: list[PlannedRequest],
    options: LoadOptions,
    record: Callable[[RequestOutcome], None],
) -> None:
    assert options.rate is not None
    schedule = open_loop_schedule(len(plan), options.rate)
    outstanding = asyncio.Semaphore(options.max_outstanding)
    start = time.perf_counter()

    async def fire(request: PlannedRequest, intended: float) -> None:
        try:
            record(await _send(client, request, intended))
        finally:
            outstanding.release()

    async with asyncio.TaskGroup() as group:
        for request, offset in zip(plan, schedule, strict=True):
            intended = start + offset
            await asyncio.sleep(max(0.0, intended - time.perf_counter()))
            if outstanding.locked():
                record(RequestOutcome(request.index, request.is_duplicate, error="dropped"))
                continue
            await outstanding.acquire()  # never waits: checked just above, same task
            group.create_task(fire(request, intended))


async def run_load(
    options: LoadOptions,
    *,
    on_result: Callable[[RequestOutcome], None] | None = None,
) -> LoadReport:
    """Send ``options.requests`` signals and report; ``on_result`` sees each outcome."""
    if options.requests < 0 or options.concurrency < 1 or options.max_outstanding < 1:
        raise ValueError("requests must be >= 0, concurrency and max_outstanding >= 1")
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    plan = signal_mix(
        options.requests,
        seed=seed,
        duplicates=options.duplicates,
        run_id=options.run_id,
        start=datetime.now(UTC),
    )
    outcomes: list[RequestOutcome] = []

    def record(outcome: RequestOutcome) -> None:
        outcomes.append(outcome)
        if on_result is not None:
            on_result(outcome)

    headers = {"X-API-Key": options.api_key, "Content-Type": "application/json"}
    client = _Client(route_url(options.url), headers, options.concurrency, options.timeout_s)
    started = time.perf_counter()
    try:
        if options.rate is None:
            await _closed_loop(client, plan, options.concurrency, record)
        else:
            await _open_loop(client, plan, options, record)
    finally:
        await client.close()
    duration = time.perf_counter() - started
    outcomes.sort(key=lambda o: o.index)
    mode = "closed" if options.rate is None else "open"
    return summarise(outcomes, duration, mode=mode, seed=seed, target_rate=options.rate)


# --------------------------------------------------------------------------- command


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
