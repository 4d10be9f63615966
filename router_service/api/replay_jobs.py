"""Guarded replays over HTTP: a selection's dry run or job (``POST /dlq/replay`` with a filter,
``dry_run``, ``snapshot``, ``rate`` or ``max``), and the jobs (``/dlq/replays``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from router_service.api.auth import ApiKey
from router_service.api.edge import services
from router_service.api.routes import (
    ERRORS,
    authenticate,
    dead_letter_item,
    iso,
    json_response,
    page_response,
    scoped,
)
from router_service.api.schemas import ReplayRequest, parse_rfc3339
from router_service.domain.errors import NotFound
from router_service.page_work import off_loop
from router_service.runtime.services import Services
from router_service.service.records import DeadLetterFilter, ReplayJobRecord
from router_service.service.replay_jobs import DryRun, JobOrder

router = APIRouter()


def selection(body: ReplayRequest) -> DeadLetterFilter:
    return DeadLetterFilter(
        ids=tuple(body.ids) if body.ids is not None else None,
        sender_id=body.sender_id,
        kind=body.kind,
        agent=body.agent,
        status=body.status,
        since=parse_rfc3339(body.since) if body.since else None,
        until=parse_rfc3339(body.until) if body.until else None,
        error_contains=body.error_contains,
    )


def job_item(job: ReplayJobRecord) -> dict[str, Any]:
    p = job.progress
    return {
        "id": job.id,
        "state": job.state,
        "created_by": job.created_by,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "finished_at": iso(job.finished_at),
        "filter": {k: v for k, v in job.filter.as_dict().items() if k != "upto_id"},
        "snapshot_id": job.filter.upto_id,
        "rate": job.rate,
        "max": job.max_entries,
        "selected": job.selected,
        "counts": {
            "replayed": p.replayed,
            "succeeded": p.succeeded,
            "failed": p.failed,
            "exhausted": p.exhausted,
            "deferred": p.deferred,
        },
        "cursor_id": p.cursor_id,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
    }


def dry_run_body(preview: DryRun) -> dict[str, Any]:
    return {
        "dry_run": True,
        "count": preview.count,
        "snapshot": preview.snapshot,
        "snapshot_id": preview.snapshot_id,
        "sample": [dead_letter_item(e) for e in preview.sample],
        "agents": preview.agents,
    }


async def replay_selection(svc: Services, body: ReplayRequest, key: ApiKey) -> Response:
    """Dry run, or a job: awaited when small and unpaced, else 202 with the job to follow."""
    flt = selection(body)
    jobs = svc.replay_jobs
    if body.dry_run:
        preview = await jobs.dry_run(flt, body.snapshot)
        svc.telemetry.audit(
            "replay.dry_run", by=key.name, filter=flt.as_dict(), count=preview.count
        )
        return await off_loop(lambda: json_response(dry_run_body(preview)))  # payloads
    limit = body.max if body.max is not None else body.limit
    order = JobOrder(flt, key.name, body.rate, limit, body.snapshot)
    job, finished = await jobs.launch(order, background=body.background)
    if finished:
        return json_response({"job": job_item(job)})
    return json_response(
        {"job": job_item(job)}, 202, headers={"Location": f"/dlq/replays/{job.id}"}
    )


@router.get("/dlq/replays", dependencies=[scoped("logs:read")], responses=ERRORS)
async def list_replay_jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None
) -> Response:
    """Newest first, ``limit`` at a time; ``next_cursor`` goes on to the older ones."""
    page = await services(request).store.list_replay_jobs(limit, cursor)
    return page_response([job_item(j) for j in page.items], page.next_cursor)


@router.get("/dlq/replays/{job_id}", dependencies=[scoped("logs:read")], responses=ERRORS)
async def get_replay_job(request: Request, job_id: int) -> Response:
    job = await services(request).store.get_replay_job(checked_job_id(job_id))
    if job is None:
        raise NotFound(f"no replay job {job_id}")
    return json_response(job_item(job))


@router.post("/dlq/replays/{job_id}/cancel", responses=ERRORS)
async def cancel_replay_job(request: Request, job_id: int) -> Response:
    """Stops the job after the entry in hand (at once when no replica is running it)."""
    svc = services(request)
    key = authenticate(request, "dlq:admin")
    return json_response(job_item(await svc.replay_jobs.cancel(checked_job_id(job_id), key.name)))


@router.post("/dlq/replays/{job_id}/resume", responses=ERRORS)
async def resume_replay_job(request: Request, job_id: int) -> Response:
    """A cancelled or failed job goes on from where it stopped, with the same snapshot."""
    svc = services(request)
    key = authenticate(request, "dlq:admin")
    return json_response(
        job_item(await svc.replay_jobs.resume(checked_job_id(job_id), key.name)), 202
    )


def checked_job_id(job_id: int) -> int:
    """A job id the store can hold; anything else is no job (404), not a database error."""
    if not 1 <= job_id < 2**63:
        raise NotFound(f"no replay job {job_id}")
    return job_id
