"""Sending: the client, the closed and the open loop, and ``run_load``, which folds every
outcome into a :class:`~loadgen.report.LoadReport`."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final

import orjson

from loadgen.mix import PlannedRequest, open_loop_schedule, signal_mix
from loadgen.report import LoadReport, RequestOutcome, summarise
from router_service.adapters.connection_pool import ConnectionPool
from router_service.adapters.http1 import ConnectionFailed, TransportError, parse_target

_ROUTE_PATH: Final = "/route"


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


# A pooled connection is dropped after this long idle, before the router's own KEEP_ALIVE_S
# (75 s by default) closes it: else a request could go out on a connection the router is
# closing, and be reset unread (the keep-alive race).
CLIENT_IDLE_S = 60.0


def _error_name(exc: BaseException) -> str:
    """The kind of a request sent and not answered, as the report counts it."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionFailed) and exc.reused and not exc.received:
        # Closed before any answer byte, on a kept connection: the keep-alive race, typically.
        return "reused_connection_closed"
    return type(exc).__name__


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
            idle_timeout_s=CLIENT_IDLE_S,
            max_body=64 * 1024 * 1024,
        )

    async def post(self, body: bytes) -> tuple[int, bytes]:
        request = self._target.encode(body, self._headers)
        response = await self._pool.exchange(self._target, request, self._timeout_s)
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
