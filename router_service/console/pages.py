"""The console's pages (GET): signals, one signal, dead letters, a replay job, rules, health.

Reading needs a session whose key has ``logs:read``; without one a page sends the browser to
the sign-in form.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from prometheus_client import Counter
from starlette.responses import RedirectResponse, Response

from router_service.api.edge import edge, services
from router_service.api.replay_jobs import checked_job_id
from router_service.api.routes import delivery_history
from router_service.console import replays, views
from router_service.console.access import ADMIN, console_state, session_of
from router_service.console.conditions import rule_condition
from router_service.console.sampling import sparkline
from router_service.console.session import ConsoleSession
from router_service.domain.errors import NotFound, StorageError
from router_service.runtime.services import Services
from router_service.service.explain import explain_payload
from router_service.service.records import DeadLetterQuery, LogQuery

pages = APIRouter(prefix="/console", include_in_schema=False)

SIGN_IN = "/console/sign-in"
PAGE_SIZE = 50


def render(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    state = console_state(request)
    context.update(
        session=session,
        csrf=state.signer.csrf_token(session) if session else "",
        admin=session is not None and session.can(ADMIN),
        views=views,
    )
    return state.templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=headers
    )


def to_sign_in() -> Response:
    return RedirectResponse(SIGN_IN, 303)


@pages.get("")
async def home(request: Request) -> Response:
    return RedirectResponse("/console/signals" if session_of(request) else SIGN_IN, 303)


@pages.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if session_of(request) is not None:
        return RedirectResponse("/console/signals", 303)
    return render(request, "sign_in.html", None)


@pages.get("/signals")
async def signals(
    request: Request,
    sender_id: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    log_id: str | None = None,
    cursor: str | None = None,
) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    wanted = views.optional(log_id)
    if wanted is not None:
        return RedirectResponse(f"/console/signals/{quote(wanted, safe='')}", 303)
    query = LogQuery(
        sender_id=views.optional(sender_id),
        kind=views.optional(kind),
        status=views.one_of(status, views.LOG_STATUSES, "status"),
        since=views.moment(since, "since"),
        until=views.moment(until, "until"),
        limit=PAGE_SIZE,
        cursor=views.optional(cursor),
        stored_json=True,  # the list shows no payload: none is parsed
    )
    page = await services(request).store.list_logs(query)
    next_params = {**dict(request.query_params), "cursor": page.next_cursor or ""}
    return render(
        request,
        "signals.html",
        session,
        query=query,
        page=page,
        next_query="&".join(f"{quote(k)}={quote(v)}" for k, v in next_params.items()),
        kinds=sorted({*services(request).routing.current().config.classifier.kinds, "default"}),
    )


@pages.get("/signals/{log_id:path}")
async def signal(request: Request, log_id: str) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    svc = services(request)
    record = await svc.store.get(log_id)
    if record is None:
        raise NotFound(f"no signal with log_id {log_id[:128]!r}")
    letters = await svc.store.list_dead_letters(
        DeadLetterQuery(status=None, log_id=log_id, limit=100, stored_json=True)
    )  # the table shows no payload
    version = svc.routing.current()
    # Which rule the active rules would pick now: worth a look when the version has changed.
    now = explain_payload(version, record.payload) if isinstance(record.payload, dict) else None
    return render(
        request,
        "signal.html",
        session,
        record=record,
        letters=letters.items,
        history=await delivery_history(svc.store, record),
        version=version,
        condition=rule_condition(version, record.rule),
        now=now,
        curl=views.resend_command(record, str(request.base_url)),
    )


@pages.get("/dead-letters")
async def dead_letters(
    request: Request,
    status: str | None = None,
    agent: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    chosen = views.one_of(status, views.DLQ_STATUSES, "status") or "pending"
    query = DeadLetterQuery(
        status=None if chosen == "all" else chosen,
        agent=views.optional(agent),
        kind=views.optional(kind),
        limit=PAGE_SIZE,
        cursor=views.optional(cursor),
        stored_json=True,  # the list shows no payload: none is parsed
    )
    store = services(request).store
    page = await store.list_dead_letters(query)
    next_params = {**dict(request.query_params), "cursor": page.next_cursor or ""}
    jobs = await store.list_replay_jobs(replays.RECENT_JOBS)  # newest first
    return render(
        request,
        "dead_letters.html",
        session,
        status=chosen,
        query=query,
        page=page,
        next_query="&".join(f"{quote(k)}={quote(v)}" for k, v in next_params.items()),
        jobs=[replays.JobView(j) for j in jobs.items],
    )


@pages.get("/replays/{job_id}")
async def replay_job(request: Request, job_id: int) -> Response:
    """One replay job, as stored: whichever replica runs it, the page shows its progress."""
    session = session_of(request)
    if session is None:
        return to_sign_in()
    job = await services(request).store.get_replay_job(checked_job_id(job_id))
    if job is None:
        raise NotFound(f"no replay job {job_id}")
    return render(request, "replay_job.html", session, view=replays.JobView(job))


@pages.get("/rules")
async def rules(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    return render(request, "rules.html", session, **rules_context(request))


def rules_context(request: Request) -> dict[str, Any]:
    svc = services(request)
    version = svc.routing.current()
    shadow = svc.shadow.current() if svc.shadow is not None else None
    return {
        "version": version,
        "config": version.config,
        "describe": rule_condition,
        "shadow": shadow,
        "shadow_diffs": shadow_differences(svc.metrics.shadow_route_diff) if shadow else [],
    }


def shadow_differences(counter: Counter) -> list[tuple[str, str, int]]:
    """(active kind, shadow kind, count) from ``shadow_route_diff_total`` as this process counted
    it (the in-process registry, not Prometheus), largest first."""
    rows = [
        (sample.labels["active_kind"], sample.labels["shadow_kind"], int(sample.value))
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value > 0
    ]
    return sorted(rows, key=lambda row: (-row[2], row[0], row[1]))


@pages.get("/health")
async def health(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return to_sign_in()
    svc = services(request)
    database: dict[str, Any] = {"ok": False, "latency_ms": None, "error": None}
    backlog: int | None = None
    try:
        async with asyncio.timeout(svc.settings.db_connect_timeout_s + 1):
            database["latency_ms"] = await svc.store.ping()
            database["ok"] = True
            backlog = await svc.store.dlq_backlog()
    except (StorageError, TimeoutError) as exc:
        database["error"] = exc.message if isinstance(exc, StorageError) else "timed out"
    return render(
        request,
        "health.html",
        session,
        database=database,
        backlog=backlog,
        in_flight=edge(request).in_flight,
        agents=agent_rows(svc),
        **latency_context(request),
    )


def agent_rows(svc: Services) -> list[dict[str, Any]]:
    guards = svc.dispatcher.guards()
    rows = []
    for name in svc.routing.current().config.agents:
        guard = guards.get(name)
        used, allowed = guard.budget.usage() if guard else (0, None)
        state = guard.breaker.state.name.lower() if guard else "closed"
        rows.append({"name": name, "state": state, "retries": used, "allowed": allowed})
    return rows


def latency_context(request: Request) -> dict[str, Any]:
    sampler = console_state(request).sampler
    p50, p95, count = sampler.headline()
    samples = list(sampler.samples)
    lines = {
        "p50": sparkline([s.p50_ms for s in samples]),
        "p95": sparkline([s.p95_ms for s in samples]),
        "rate": sparkline([s.per_s for s in samples]),
        "in_flight": sparkline([float(s.in_flight) for s in samples]),
    }
    return {
        "p50": p50,
        "p95": p95,
        "count": count,
        "lines": lines,
        "samples": samples,
        "interval_s": sampler.interval_s,
    }
