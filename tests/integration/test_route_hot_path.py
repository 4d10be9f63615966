"""POST /route is served in front of FastAPI's middleware stack (``RouterApp``), with the same
trace header, error mapping and metrics as every other request."""

from __future__ import annotations

from typing import Any

import httpx

from router_service.devtools.demo_agents import RunningAgents
from tests.support.server import RouterServer

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_route_skips_fastapis_middleware_stack_and_nothing_else_does(
    router: RouterServer, client: httpx.Client, agents: RunningAgents
) -> None:
    app: Any = router.app
    stack = app.middleware_stack
    assert stack is not None  # built when the server started
    passed: list[tuple[str, str]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        passed.append((scope["method"], scope["path"]))
        await stack(scope, receive, send)

    app.middleware_stack = recording
    try:
        routed = client.post(
            "/route",
            json={"sender_id": "hot", "payload": {"route": "one"}},
            headers={"traceparent": TRACEPARENT},
        )
        broken = client.post("/route", content=b"{", headers={"content-type": "application/json"})
        live = client.get("/health/live")
        wrong_method = client.get("/route")
    finally:
        app.middleware_stack = stack

    assert routed.status_code == 200
    assert routed.json()["trace_id"] == TRACEPARENT.split("-")[1]
    assert routed.headers["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    assert "traceparent" in broken.headers
    assert live.status_code == 200
    assert wrong_method.status_code == 405
    assert passed == [("GET", "/health/live"), ("GET", "/route")]
    metrics = client.get("/metrics").text
    assert 'http_responses_total{route="/route",status_class="2xx"}' in metrics
    assert 'http_responses_total{route="/route",status_class="4xx"}' in metrics
