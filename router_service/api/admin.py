"""``POST /admin/reload`` (scope ``config:admin``): re-read the routing file now."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from router_service.api.edge import services
from router_service.api.routes import ERRORS, authenticate, json_response
from router_service.domain.errors import ReloadRefused

router = APIRouter()


@router.post("/admin/reload", responses=ERRORS)
async def reload_routing(request: Request) -> Response:
    """Valid and passing its own tests: swapped in atomically (200, ``reloaded`` or
    ``unchanged``). Otherwise 422 ``routing_reload_refused`` with the reason; the active version
    stays. Under ``--workers N`` every worker reloads."""
    svc = services(request)
    key = authenticate(request, "config:admin")
    report = await svc.reloader.reload(trigger="api", by=key.name)
    if report.outcome == "refused":
        raise ReloadRefused(
            f"reload refused, version {report.active.version} stays active: {report.error}"
        )
    return json_response(report.as_dict())
