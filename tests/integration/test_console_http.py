"""The console over plain HTTP: security headers, the session cookie, CSRF, scopes, audit
lines and input errors, on both backends (the browser tests cover what a person does)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import make_settings
from tests.support.server import RouterServer

KEYS = "admin:admin-key,reader:reader-key:logs:read"


@pytest.fixture(scope="module")
def router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    server = RouterServer(
        # INFO: the audit lines are info events.
        make_settings(database_url, routing_file, api_key=None, api_keys=KEYS, log_level="INFO")
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_client(router: RouterServer) -> Iterator[Callable[[], httpx.Client]]:
    """Clients on the router, closed after the test."""
    opened: list[httpx.Client] = []

    def make() -> httpx.Client:
        opened.append(httpx.Client(base_url=router.base_url, timeout=30))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


def signed_in(new_client: Callable[[], httpx.Client], key: str) -> tuple[httpx.Client, str]:
    """A client holding a console session, and the session's CSRF token."""
    client = new_client()
    assert client.post("/console/sign-in", data={"api_key": key}).status_code == 303
    page = client.get("/console/signals").text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match is not None
    return client, match.group(1)


def assert_secure_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_every_console_response_carries_the_security_headers(
    router: RouterServer, new_client: Callable[[], httpx.Client]
) -> None:
    anonymous = new_client()
    client, _ = signed_in(new_client, "admin-key")
    responses = [
        anonymous.get("/console"),
        anonymous.get("/console/sign-in"),
        anonymous.get("/console/signals"),
        anonymous.get("/console/static/console.js"),
        anonymous.get("/console/static/console.css"),
        anonymous.post("/console/sign-in", data={"api_key": "wrong"}),
        anonymous.post("/console/dead-letters/replay", data={"ids": "1"}),
        client.get("/console/signals"),
        client.get("/console/dead-letters"),
        client.get("/console/rules"),
        client.get("/console/health"),
        client.get("/console/signals/no-such-signal"),
        client.get("/console/signals?status=bogus"),
        client.post("/console/rules/explain", data={"payload": "{}"}),
    ]
    assert [r.status_code for r in responses] == [
        303, 200, 303, 200, 200, 401, 401, 200, 200, 200, 200, 404, 422, 403,
    ]  # fmt: skip
    for response in responses:
        assert_secure_headers(response)
    assert "X-Frame-Options" not in anonymous.get("/health").headers


def test_the_session_cookie_is_http_only_strict_and_holds_no_key(
    new_client: Callable[[], httpx.Client],
) -> None:
    client = new_client()
    answer = client.post("/console/sign-in", data={"api_key": "admin-key"})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "admin-key" not in cookie
    for path in ("/console/signals", "/console/rules", "/console/health"):
        assert "admin-key" not in client.get(path).text
    token = client.cookies["router_console"]
    body, mac = token.split(".")
    forged = new_client()
    forged.cookies.set("router_console", f"{body}.{mac[::-1]}")
    assert forged.get("/console/signals").headers["location"] == "/console/sign-in"


def test_a_forged_replay_needs_both_the_token_and_the_admin_scope(
    new_client: Callable[[], httpx.Client],
) -> None:
    admin, admin_csrf = signed_in(new_client, "admin-key")
    reader, reader_csrf = signed_in(new_client, "reader-key")
    missing = admin.post("/console/dead-letters/preview", data={"ids": "1"})
    assert missing.status_code == 403
    assert "CSRF" in missing.json()["error"]["message"]
    # Another session's token does not do either.
    crossed = admin.post("/console/dead-letters/preview", data={"ids": "1", "csrf": reader_csrf})
    assert crossed.status_code == 403
    scoped = reader.post("/console/dead-letters/replay", data={"ids": "1", "csrf": reader_csrf})
    assert scoped.status_code == 403
    assert "dlq:admin" in scoped.json()["error"]["message"]
    allowed = admin.post("/console/dead-letters/preview", data={"ids": "1", "csrf": admin_csrf})
    assert allowed.status_code == 200


def test_replay_actions_are_audited_with_the_key_name(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=503)
    api = new_client()
    api.headers["X-API-Key"] = "admin-key"
    api.post("/route", json={"sender_id": "audit", "payload": {"route": "one"}})
    agents.reset()
    (entry,) = api.get("/dlq").json()["items"]
    client, csrf = signed_in(new_client, "admin-key")
    with structlog.testing.capture_logs() as logs:
        preview = client.post("/console/dead-letters/preview", data={"csrf": csrf})
        started = client.post(
            "/console/dead-letters/replay", data={"csrf": csrf, "ids": entry["id"], "rate": "50"}
        )
    assert preview.status_code == 200
    assert started.status_code == 303
    actions = [(e["action"], e["key"]) for e in logs if e.get("event") == "console.action"]
    assert actions == [("replay_previewed", "admin"), ("replay_started", "admin")]
    assert all("admin-key" not in str(e) for e in logs)


def test_the_explain_box_answers_bad_input_with_a_message(
    new_client: Callable[[], httpx.Client],
) -> None:
    client, csrf = signed_in(new_client, "reader-key")
    not_json = client.post("/console/rules/explain", data={"csrf": csrf, "payload": "{oops"})
    assert not_json.status_code == 422
    assert "Not JSON" in not_json.text
    a_list = client.post("/console/rules/explain", data={"csrf": csrf, "payload": "[1]"})
    assert a_list.status_code == 422
    assert "must be a JSON object" in a_list.text
    huge = client.post("/console/rules/explain", data={"csrf": csrf, "payload": "x" * (300 * 1024)})
    assert huge.status_code == 413
    as_json = client.post(
        "/console/rules/explain", json={"payload": "{}"}, headers={"X-CSRF": csrf}
    )
    assert as_json.status_code == 415
