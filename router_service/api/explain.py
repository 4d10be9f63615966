"""``POST /route/explain``: the decision trace for a ``/route`` body; nothing is sent or logged."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from router_service.api.body import read_model
from router_service.api.edge import edge, services
from router_service.api.routes import ERRORS, json_response, scoped
from router_service.api.schemas import RouteRequest, inline_schema
from router_service.service.explain import explain_payload

router = APIRouter()


@router.post(
    "/route/explain",
    dependencies=[scoped("route")],
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(RouteRequest)}},
        }
    },
)
async def explain_route(request: Request) -> Response:
    """Every rule in order (matched or not, and why), the winner, the plan and each planned
    agent's circuit. Never claims, dispatches or writes to the log."""
    svc = services(request)
    body = await read_model(request, RouteRequest, edge(request).limits)
    answer = explain_payload(
        svc.routing.current(),
        body.payload,
        body.mode,
        default_timeout_s=svc.settings.agent_timeout_ms / 1000,
        circuits=svc.dispatcher.circuit_states(),
    )
    return json_response(answer)
