"""The HTTP edge: thin handlers that parse, call the service and shape the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from router_service.api.auth import ApiKey, client_address, require_scope, require_sender
from router_service.api.body import read_model
from router_service.api.edge import Edge, edge, services
from router_service.api.schemas import (
    ErrorResponse,
    ReplayRequest,
    ReplayResponse,
    RouteRequest,
    RouteResponse,
    inline_schema,
    parse_rfc3339,
    query_bound,
)
from router_service.domain.errors import (
    AuthError,
    NotFound,
    Overloaded,
    SenderOverLimit,
    StorageError,
    ValidationFailed,
)
from router_service.domain.signal import Signal
from router_service.jsonwire import dumps
from router_service.observability.tracing import TraceContext
from router_service.page_work import off_loop
from router_service.runtime.services import Services
from router_service.service.ports import Store
from router_service.service.records import (
    DeadLetterQuery,
    DeadLetterRecord,
    LogQuery,
    LogRecord,
    Page,
)

router = APIRouter()
R = TypeVar("R")

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse}
    for status in (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503)
}


def authenticate(request: Request, scope: str) -> ApiKey:
    """Before any body is read: an unauthenticated request is never parsed. The key is checked
    first; only failures count against the client address (a valid key never pays for them)."""
    try:
        key = edge(request).keys.authenticate(request.headers.get("x-api-key"))
    except AuthError:
        count_auth_failure(request)
        raise
    require_scope(key, scope)
    return key


def count_auth_failure(request: Request) -> None:
    """One failed authentication against the client's address (``TooManyAuthFailures`` once
    over the limit); the console's sign-in counts the same way."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    http = edge(request)
    http.auth_failures.failed(client_address(peer, forwarded, http.trusted_proxies))


def scoped(scope: str) -> Any:
    # async: a plain def would be run in a thread pool on every request.
    async def authenticated(
        request: Request, x_api_key: Annotated[str | None, Header()] = None
    ) -> None:
        authenticate(request, scope)

    return Depends(authenticated)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, media_type="application/json")


def page_response(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """``{"items": [...], "next_cursor": ...}``, each item written on its own: a value orjson
    refuses (an integer past 64 bits) sends its own item to the standard library, not the whole
    page (200-240 ms of the event loop for a 4 MB page)."""
    body = b'{"items":[%b],"next_cursor":%b}' % (b",".join(map(dumps, items)), dumps(next_cursor))
    return Response(body, 200, media_type="application/json")


async def page_answer(page: Page[R], item: Callable[[R], dict[str, Any]]) -> Response:
    """``page_response`` of a page's records, written on the page thread (``page_work``): a
    page holds up to about 4 MB of payloads."""
    return await off_loop(lambda: page_response(list(map(item, page.items)), page.next_cursor))


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


@router.post(
    "/route",
    response_model=RouteResponse,
    responses={**ERRORS, 202: {"model": RouteResponse}},
    openapi_extra={
        "parameters": [
            {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(RouteRequest)}},
        },
    },
)
async def route(request: Request) -> Response:
    """Documents the endpoint; requests are normally served by ``RouteFastPath`` in front of
    FastAPI (same function, less machinery around it)."""
    return await handle_route(request, services(request), edge(request))


async def handle_route(request: Request, svc: Services, http: Edge) -> Response:
    key = authenticate(request, "route")
    received = datetime.now(UTC)
    # A signal is in flight once its body is read: counted from the request's start, clients
    # that sent their bodies slowly held every slot of MAX_IN_FLIGHT (for BODY_TIMEOUT_S each)
    # and everyone else got 503. Bodies being read are bounded by the connections a client
    # may hold, each with one body of at most MAX_BODY_BYTES.
    body = await read_model(request, RouteRequest, http.limits)
    require_sender(key, body.sender_id)
    if http.in_flight >= http.max_in_flight:
        raise Overloaded("too many signals in flight; retry shortly")
    http.in_flight += 1
    try:
        return await _route(request, svc, body, received)
    finally:
        http.in_flight -= 1


async def _route(
    request: Request, svc: Services, body: RouteRequest, received: datetime
) -> Response:
    signal = Signal.create(
        sender_id=body.sender_id,
        payload=body.payload,
        timestamp=parse_rfc3339(body.timestamp) if body.timestamp else received,
        metadata=body.metadata,
        log_id=body.log_id,
    )
    trace: TraceContext = request.scope["state"]["trace"]
    if not svc.senders.enter(signal.sender_id):
        svc.telemetry.sender_refused()
        raise SenderOverLimit(
            f"this sender has {svc.settings.sender_max_in_flight} signals in flight; retry shortly"
        )
    try:
        answer = await svc.intake.route(signal, body.mode, trace)
    finally:
        svc.senders.leave(signal.sender_id)
    headers = {"Idempotent-Replayed": "true"} if answer.duplicate else None
    status = 202 if answer.status == "dead_lettered" else 200
    return json_response(answer.as_dict(), status, headers)


def _log_item(record: LogRecord) -> dict[str, Any]:
    return {
        "log_id": record.log_id,
        "trace_id": record.trace_id,
        "sender_id": record.sender_id,
        "kind": record.kind,
        "rule": record.rule,
        "mode": record.mode,
        "status": record.status.value,
        "routed_agents": record.routed_agents,
        "payload": record.payload,
        "metadata": record.metadata,
        "response": record.response,
        "results": record.results,
        "timestamp": iso(record.signal_ts),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "latency_ms": record.latency_ms,
        "routing_version": record.routing_version,
    }


def dead_letter_item(entry: DeadLetterRecord) -> dict[str, Any]:
    return {
        "id": entry.id,
        "log_id": entry.log_id,
        "agent": entry.agent,
        "kind": entry.kind,
        "mode": entry.mode,
        "payload": entry.payload,
        "error": entry.error,
        "attempts": entry.attempts,
        "replay_count": entry.replay_count,
        "status": entry.status,
        "created_at": iso(entry.created_at),
        "last_attempt_at": iso(entry.last_attempt_at),
    }


LogStatus = Literal["in_progress", "delivered", "partial", "dead_lettered"]
BOUND = "RFC 3339 date-time with an offset; since is inclusive, until exclusive"
BOUND_EXAMPLE = "2026-01-01T12:00:00Z"


@router.get("/logs", dependencies=[scoped("logs:read")], responses=ERRORS)
async def list_logs(
    request: Request,
    sender_id: str | None = None,
    kind: str | None = None,
    status: LogStatus | None = None,
    since: Annotated[str | None, Query(description=BOUND, examples=[BOUND_EXAMPLE])] = None,
    until: Annotated[str | None, Query(description=BOUND, examples=[BOUND_EXAMPLE])] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Response:
    query = LogQuery(
        sender_id=sender_id,
        kind=kind,
        status=status,
        since=query_bound(since, "since"),
        until=query_bound(until, "until"),
        limit=limit,
        cursor=cursor,
        stored_json=True,  # written out as stored, not parsed and written again
    )
    return await page_answer(await services(request).store.list_logs(query), _log_item)


@router.get("/logs/{log_id:path}", dependencies=[scoped("logs:read")], responses=ERRORS)
async def get_log(request: Request, log_id: str) -> Response:
    store = services(request).store
    record = await store.get(log_id)
    if record is None:
        raise NotFound(f"no signal with log_id {log_id[:128]!r}")
    item = _log_item(record)
    item["delivery_history"] = await delivery_history(store, record)
    return json_response(item)


async def delivery_history(store: Store, record: LogRecord) -> list[dict[str, Any]]:
    """What happened to this signal, in one list: its own delivery, then each replay (with the
    job that replayed it, if any). ``GET /logs/{id}`` and the console's signal page show it."""
    original = {"attempt": "original", "trace_id": record.trace_id, "at": iso(record.created_at)}
    replays = [
        {
            "attempt": "replay",
            "job_id": a.job_id,
            "trace_id": a.trace_id,
            "agent": a.agent,
            "outcome": a.outcome,
            "error": a.error,
            "at": iso(a.created_at),
        }
        for a in await store.replay_history(record.log_id)
    ]
    return [original, *replays]


DlqStatus = Literal["pending", "replayed", "exhausted", "all"]


@router.get("/dlq", dependencies=[scoped("logs:read")], responses=ERRORS)
async def list_dead_letters(
    request: Request,
    status: DlqStatus = "pending",
    agent: str | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Response:
    query = DeadLetterQuery(
        status=None if status == "all" else status,
        agent=agent,
        kind=kind,
        limit=limit,
        cursor=cursor,
        stored_json=True,  # written out as stored, not parsed and written again
    )
    page = await services(request).store.list_dead_letters(query)
    return await page_answer(page, dead_letter_item)


@router.post(
    "/dlq/replay",
    response_model=ReplayResponse,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(ReplayRequest)}},
        }
    },
)
async def replay_dead_letters(request: Request) -> Response:
    """``limit`` or ``ids`` alone: replay now and answer the summary. With a filter,
    ``dry_run``, ``snapshot``, ``rate``, ``max`` or ``background``: a guarded selection
    (``api/replay_jobs.py``)."""
    svc = services(request)
    key = authenticate(request, "dlq:admin")
    body = await read_model(request, ReplayRequest, edge(request).limits)
    if body.is_selection:
        from router_service.api.replay_jobs import replay_selection  # imports this module

        return await replay_selection(svc, body, key)
    if (body.limit is None) == (body.ids is None):
        raise ValidationFailed("give exactly one of 'limit' or 'ids'")
    summary = await svc.replayer.replay(limit=body.limit, ids=body.ids)
    svc.telemetry.audit(
        "replay.run", by=key.name, limit=body.limit, ids=body.ids, **summary.as_dict()
    )
    return json_response(summary.as_dict())


@router.get("/health")
async def health(request: Request) -> Response:
    svc = services(request)
    circuits = svc.dispatcher.circuit_states()
    degraded = any(state != "closed" for state in circuits.values())
    agents = {"status": "degraded" if degraded else "ok", "circuits": circuits}
    routing = svc.routing.current().describe()
    if svc.reloader.last is not None:
        routing["last_reload"] = svc.reloader.last.as_dict()
    try:
        async with asyncio.timeout(svc.settings.db_connect_timeout_s + 1):
            latency_ms = await svc.store.ping()
    except (StorageError, TimeoutError) as exc:
        message = exc.message if isinstance(exc, StorageError) else "database ping timed out"
        failed = {"status": "unavailable", "error": message}
        checks = {"database": failed, "agents": agents}
        return json_response({"status": "unavailable", "checks": checks, "routing": routing}, 503)
    database = {"status": "ok", "latency_ms": round(latency_ms, 3)}
    checks = {"database": database, "agents": agents}
    return json_response({"status": "ok", "checks": checks, "routing": routing})


@router.get("/health/live")
async def live() -> Response:
    return json_response({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    svc = services(request)
    return Response(svc.render_metrics(), media_type=CONTENT_TYPE_LATEST)
