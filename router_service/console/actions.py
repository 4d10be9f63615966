"""The console's actions (POST): sign in and out, explain a payload, preview and run a replay,
cancel a run. Every one but sign-in carries the session's CSRF token; every one that changes
state needs ``dlq:admin`` and is audited with the key's name."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from router_service.api.auth import client_address
from router_service.console import replays
from router_service.console.access import (
    ADMIN,
    READ,
    audit,
    authorised_form,
    console_state,
    read_form,
)
from router_service.console.explain import explain
from router_service.console.pages import render, rules_context, services
from router_service.console.session import COOKIE
from router_service.domain.errors import AuthError, NotFound, ValidationFailed
from router_service.observability.logging import get_logger

actions = APIRouter(prefix="/console", include_in_schema=False)

MAX_RATE = 1000.0


@actions.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """The key is read from the form body, checked like ``X-API-Key`` (failures count against
    the address) and forgotten: the cookie holds its name and scopes."""
    svc = services(request)
    form = await read_form(request, svc.limits)
    try:
        key = console_state(request).keys.authenticate(form.first("api_key") or None)
    except AuthError:
        # Only failures count against the address (429 once over the limit), as on the API.
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for")
        svc.auth_failures.failed(client_address(peer, forwarded, svc.trusted_proxies))
        return render(request, "sign_in.html", None, 401, error="That key is not valid.")
    if READ not in key.scopes:
        message = f"The key {key.name!r} lacks the scope logs:read, which the console needs."
        return render(request, "sign_in.html", None, 403, error=message)
    token, _ = console_state(request).signer.issue(key.name, key.scopes)
    get_logger("console.audit").info("console.signed_in", key=key.name)
    response = RedirectResponse("/console/signals", 303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(console_state(request).signer.lifetime_s),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@actions.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session, _ = await authorised_form(request, READ)
    audit(session, "signed_out")
    response = RedirectResponse("/console/sign-in", 303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@actions.post("/rules/explain")
async def explain_payload(request: Request) -> Response:
    session, form = await authorised_form(request, READ)
    text = form.first("payload")
    context = rules_context(request)
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        error = f"Not JSON: {exc}"
        return render(request, "rules.html", session, 422, pasted=text, error=error, **context)
    if not isinstance(payload, dict):
        error = "The payload must be a JSON object."
        return render(request, "rules.html", session, 422, pasted=text, error=error, **context)
    trace = explain(context["version"], payload)
    return render(request, "rules.html", session, pasted=text, trace=trace, **context)


def _selection(form_ids: list[str], agent: str, kind: str) -> replays.Selection:
    if form_ids:
        try:
            ids = tuple(int(i) for raw in form_ids for i in raw.split(",") if i.strip())
        except ValueError as exc:
            raise ValidationFailed("ids: expected dead-letter ids") from exc
        if len(ids) > replays.MAX_SELECTION:
            raise ValidationFailed(f"ids: at most {replays.MAX_SELECTION} at once")
        return replays.Selection(ids=ids)
    return replays.Selection(agent=agent or None, kind=kind or None)


@actions.post("/dead-letters/preview")
async def preview_replay(request: Request) -> Response:
    session, form = await authorised_form(request, ADMIN)
    selection = _selection(form.all("ids"), form.first("agent"), form.first("kind"))
    svc = services(request)
    preview = await replays.preview(svc.store, svc.routing, svc.dispatcher, selection)
    audit(session, "replay_previewed", entries=len(preview.ids), truncated=preview.truncated)
    return render(request, "replay_preview.html", session, preview=preview, selection=selection)


@actions.post("/dead-letters/replay")
async def replay(request: Request) -> Response:
    session, form = await authorised_form(request, ADMIN)
    selection = _selection(form.all("ids"), "", "")
    if not selection.ids:
        raise ValidationFailed("ids: nothing selected to replay")
    try:
        rate = float(form.first("rate") or "10")
    except ValueError as exc:
        raise ValidationFailed("rate: expected entries per second") from exc
    if not 0 < rate <= MAX_RATE:
        raise ValidationFailed(f"rate: between 0 and {MAX_RATE:g} entries per second")
    run = replays.start_replay(
        console_state(request).runs,
        services(request).replayer,
        session.key_name,
        selection.ids,
        rate,
    )
    audit(session, "replay_started", run=run.id, entries=len(selection.ids), rate_per_s=rate)
    return RedirectResponse(f"/console/replays/{run.id}", 303)


@actions.post("/replays/{run_id}/cancel")
async def cancel(request: Request, run_id: int) -> Response:
    session, _ = await authorised_form(request, ADMIN)
    run = console_state(request).runs.get(run_id)
    if run is None:
        raise NotFound(f"no replay run {run_id} in this process")
    replays.cancel_replay(run)
    audit(session, "replay_cancelled", run=run.id)
    return RedirectResponse(f"/console/replays/{run.id}", 303)
