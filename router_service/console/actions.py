"""The console's actions (POST): sign in and out, explain a payload, preview a replay and start
it as a replay job, cancel or resume a job. Every one but sign-in carries the session's CSRF
token; every one that changes state needs ``dlq:admin`` and is audited with the key's name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from router_service.api.body import BodyLimits, parse_within
from router_service.api.edge import edge, services
from router_service.api.replay_jobs import checked_job_id
from router_service.api.routes import count_auth_failure
from router_service.console import replays
from router_service.console.access import (
    ADMIN,
    READ,
    audit,
    authorised_form,
    console_state,
    reached_over_https,
    read_form,
)
from router_service.console.pages import render, rules_context
from router_service.console.session import COOKIE, ConsoleSession
from router_service.domain.errors import (
    AuthError,
    InvalidJson,
    NotFound,
    TooManyReplayJobs,
    ValidationFailed,
)
from router_service.observability.logging import get_logger
from router_service.service.explain import explain_payload
from router_service.service.records import DeadLetterFilter
from router_service.service.replay_jobs import DryRun, JobOrder

actions = APIRouter(prefix="/console", include_in_schema=False)


@actions.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """The key is read from the form body, checked like ``X-API-Key`` (failures count against
    the address) and forgotten: the cookie holds its name and scopes."""
    form = await read_form(request, edge(request).limits)
    try:
        key = console_state(request).keys.authenticate(form.first("api_key") or None)
    except AuthError:
        count_auth_failure(request)  # only failures count, as on the API
        return render(request, "sign_in.html", None, 401, error="That key is not valid.")
    if READ not in key.scopes:
        message = f"The key {key.name!r} lacks the scope logs:read, which the console needs."
        return render(request, "sign_in.html", None, 403, error=message)
    token, _ = console_state(request).signer.issue(key.name, key.digest, key.scopes)
    get_logger("console.audit").info("console.signed_in", key=key.name)
    response = RedirectResponse("/console/signals", 303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(console_state(request).signer.lifetime_s),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=reached_over_https(request),
    )
    return response


@actions.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session, _ = await authorised_form(request, READ)
    audit(session, "signed_out")
    response = RedirectResponse("/console/sign-in", 303)
    response.delete_cookie(
        COOKIE,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=reached_over_https(request),
    )
    return response


@actions.post("/rules/explain")
async def explain(request: Request) -> Response:
    """The operations explain (``POST /route/explain``'s trace) for a pasted payload; nothing is
    routed or logged."""
    session, form = await authorised_form(request, READ)
    text = form.first("payload")
    context = rules_context(request)
    try:
        payload = pasted_payload(text, edge(request).limits)
    except (InvalidJson, ValidationFailed) as exc:
        error = f"Not JSON: {exc}" if isinstance(exc, InvalidJson) else f"Refused: {exc}"
        return render(request, "rules.html", session, 422, pasted=text, error=error, **context)
    svc = services(request)
    trace = explain_payload(
        svc.routing.current(),
        payload,
        default_timeout_s=svc.settings.agent_timeout_ms / 1000,
        circuits=svc.dispatcher.circuit_states(),
    )
    return render(request, "rules.html", session, pasted=text, trace=trace, **context)


def pasted_payload(text: str, limits: BodyLimits) -> dict[str, Any]:
    """The pasted payload, read as ``POST /route/explain`` reads a body's: strict JSON, within
    the body's limits (nesting, strings, arrays), an object."""
    value = parse_within(text.encode(), limits)
    if not isinstance(value, dict):
        raise ValidationFailed("the payload must be a JSON object")
    return value


@actions.post("/dead-letters/preview")
async def preview_replay(request: Request) -> Response:
    """The replay job's dry run: count, sample, agents and their circuits, a snapshot token."""
    session, form = await authorised_form(request, ADMIN)
    flt = replays.selection(form.all("ids"), form.first("agent"), form.first("kind"))
    preview = await services(request).replay_jobs.dry_run(flt)
    audit(session, "replay_previewed", entries=preview.count, snapshot_id=preview.snapshot_id)
    return preview_page(request, session, flt, preview)


def preview_page(
    request: Request,
    session: ConsoleSession,
    flt: DeadLetterFilter,
    preview: DryRun,
    refused: TooManyReplayJobs | None = None,
) -> Response:
    """The preview of ``flt``, with its form to start the job; ``refused``: why it did not."""
    return render(
        request,
        "replay_preview.html",
        session,
        refused.status if refused else 200,
        refused.headers if refused else None,
        preview=preview,
        ids=",".join(str(i) for i in flt.ids or ()),
        agent=flt.agent or "",
        kind=flt.kind or "",
        error=refused.message if refused else None,
    )


@actions.post("/dead-letters/replay")
async def replay(request: Request) -> Response:
    """A background replay job of the previewed set (the form carries the dry run's snapshot
    token), at the chosen rate, started by the session's key."""
    session, form = await authorised_form(request, ADMIN)
    flt = replays.selection(form.all("ids"), form.first("agent"), form.first("kind"))
    snapshot = form.first("snapshot")
    if not snapshot:
        raise ValidationFailed("snapshot: preview the replay first")
    rate = replays.rate(form.first("rate"))
    jobs = services(request).replay_jobs
    try:
        job, _ = await jobs.launch(JobOrder(flt, session.key_name, rate, token=snapshot))
    except TooManyReplayJobs as exc:  # the same preview again, with why nothing started
        return preview_page(request, session, flt, await jobs.dry_run(flt, snapshot), exc)
    audit(session, "replay_started", job=job.id, entries=job.selected, rate_per_s=rate)
    return RedirectResponse(f"/console/replays/{job.id}", 303)


@actions.post("/replays/{job_id}/cancel")
async def cancel(request: Request, job_id: int) -> Response:
    """Stops the job after the entry in hand, whichever replica runs it."""
    session, _ = await authorised_form(request, ADMIN)
    job = await services(request).replay_jobs.cancel(checked_job_id(job_id), session.key_name)
    audit(session, "replay_cancelled", job=job.id)
    return RedirectResponse(f"/console/replays/{job.id}", 303)


@actions.post("/replays/{job_id}/resume")
async def resume(request: Request, job_id: int) -> Response:
    """A cancelled or failed job goes on from where it stopped, with the same snapshot."""
    session, _ = await authorised_form(request, ADMIN)
    svc = services(request)
    try:
        job = await svc.replay_jobs.resume(checked_job_id(job_id), session.key_name)
    except TooManyReplayJobs as exc:  # the job's page, with why it did not resume
        found = await svc.store.get_replay_job(job_id)
        if found is None:
            raise NotFound(f"no replay job {job_id}") from exc
        view, error = replays.JobView(found), exc.message
        return render(
            request, "replay_job.html", session, exc.status, exc.headers, view=view, error=error
        )
    audit(session, "replay_resumed", job=job.id, cursor_id=job.progress.cursor_id)
    return RedirectResponse(f"/console/replays/{job.id}", 303)
