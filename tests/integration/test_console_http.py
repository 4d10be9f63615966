"""The console over plain HTTP: security headers, the session cookie, CSRF, scopes, audit
lines and input errors, and what it shows of the operations API (replay jobs, the explain trace,
a signal's routing version and delivery history, shadow differences), on both backends (the
browser tests cover what a person does)."""

from __future__ import annotations

import base64
import html
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from router_service.config.routing_source import read_version
from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import make_settings
from tests.support.polling import wait_for
from tests.support.routing_files import routing_yaml
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


def refusal(response: httpx.Response) -> str:
    """The reason a console page of error gives (the API answers JSON; the console a page)."""
    assert response.headers["content-type"].startswith("text/html"), response.text
    found = re.search(r'<p class="error" id="error" role="alert">(.*?)</p>', response.text, re.S)
    assert found is not None, response.text
    return html.unescape(found.group(1))


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
        client.get("/console/replays/999999"),
        client.get("/console/signals?sender_id=%00"),  # NoNulInUrl's, outside the console
    ]
    assert [r.status_code for r in responses] == [
        303, 200, 303, 200, 200, 401, 401, 200, 200, 200, 200, 404, 422, 403, 404, 422,
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
    assert "CSRF" in refusal(missing)
    # Another session's token does not do either.
    crossed = admin.post("/console/dead-letters/preview", data={"ids": "1", "csrf": reader_csrf})
    assert crossed.status_code == 403
    scoped = reader.post("/console/dead-letters/replay", data={"ids": "1", "csrf": reader_csrf})
    assert scoped.status_code == 403
    assert "dlq:admin" in refusal(scoped)
    allowed = admin.post("/console/dead-letters/preview", data={"ids": "1", "csrf": admin_csrf})
    assert allowed.status_code == 200


def test_a_refusal_is_a_console_page_with_the_reason_and_a_way_back(
    new_client: Callable[[], httpx.Client],
) -> None:
    """A person at the console saw the API's JSON when a form was refused or a page was
    missing; every other path keeps its JSON errors."""
    client, csrf = signed_in(new_client, "admin-key")
    gone = client.post("/console/replays/999999/cancel", data={"csrf": csrf})
    assert gone.status_code == 404
    assert refusal(gone) == "no replay job 999999"
    assert '<a href="/console/replays/999999" id="back">' in gone.text
    assert 'id="who">admin' in gone.text  # the console's own frame, signed in
    assert_secure_headers(gone)
    missing = client.get("/console/signals/no-such-signal")
    assert missing.status_code == 404
    assert "no signal with log_id 'no-such-signal'" in refusal(missing)
    assert '<a href="/console/signals" id="back">' in missing.text
    not_a_job = client.get("/console/replays/first")
    assert not_a_job.status_code == 422
    assert "job_id" in refusal(not_a_job)
    assert '<a href="/console/dead-letters" id="back">' in not_a_job.text
    nowhere = client.get("/console/nowhere")
    assert nowhere.status_code == 404
    assert refusal(nowhere) == "Not Found"
    anonymous = new_client().post("/console/dead-letters/preview", data={"ids": "1"})
    assert anonymous.status_code == 401
    assert refusal(anonymous) == "sign in to the console first"
    assert '<a href="/console/sign-in" id="back">' in anonymous.text
    assert 'id="who"' not in anonymous.text
    # Not the console's pages: the API's JSON errors, and a static file's plain 404.
    api = client.get("/logs/no-such-signal", headers={"X-API-Key": "admin-key"})
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    static = client.get("/console/static/nowhere.js")
    assert static.status_code == 404
    assert static.headers["content-type"] == "application/json"


def admin_api(new_client: Callable[[], httpx.Client]) -> httpx.Client:
    api = new_client()
    api.headers["X-API-Key"] = "admin-key"
    return api


def park(api: httpx.Client, agents: RunningAgents, count: int) -> list[dict[str, Any]]:
    """``count`` signals of kind ``one`` dead-lettered (alpha answers 503), then alpha is back;
    returns the pending dead letters."""
    agents.set("alpha", mode="fail", status=503)
    for n in range(count):
        answer = api.post("/route", json={"sender_id": "park", "payload": {"route": "one", "n": n}})
        assert answer.json()["status"] == "dead_lettered"
    agents.reset()
    items: list[dict[str, Any]] = api.get("/dlq").json()["items"]
    assert len(items) == count
    return items


def preview(client: httpx.Client, csrf: str, **selection: str) -> tuple[httpx.Response, str]:
    """The console's dry run of a selection, and the snapshot token its page carries."""
    answer = client.post("/console/dead-letters/preview", data={"csrf": csrf, **selection})
    assert answer.status_code == 200, answer.text
    match = re.search(r'name="snapshot" value="([^"]+)"', answer.text)
    assert match is not None
    return answer, match.group(1)


def job_of(started: httpx.Response) -> int:
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.startswith("/console/replays/")
    return int(location.rsplit("/", 1)[1])


def wait_for_job(api: httpx.Client, job_id: int, state: str, timeout_s: float = 15) -> Any:
    def job() -> Any:
        return api.get(f"/dlq/replays/{job_id}").json()

    return wait_for(
        lambda: (found := job())["state"] == state and found,
        timeout_s,
        what=f"replay job {job_id} to be {state}",
        detail=lambda: f"last seen: {job()}",
    )


def test_a_console_replay_is_a_replay_job_started_by_the_keys_name_and_audited(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    api = admin_api(new_client)
    (entry,) = park(api, agents, 1)
    client, csrf = signed_in(new_client, "admin-key")
    ids = str(entry["id"])
    with structlog.testing.capture_logs() as logs:
        previewed, snapshot = preview(client, csrf, ids=ids)
        started = client.post(
            "/console/dead-letters/replay",
            data={"csrf": csrf, "ids": ids, "snapshot": snapshot, "rate": "50"},
        )
    assert "1</strong> pending entry would be replayed" in previewed.text
    job_id = job_of(started)
    actions = [(e["action"], e["key"]) for e in logs if e.get("event") == "console.action"]
    assert actions == [("replay_previewed", "admin"), ("replay_started", "admin")]
    assert all("admin-key" not in str(e) for e in logs)
    # The job is the operations API's: listed by GET /dlq/replays, started by the key's name.
    listed = api.get("/dlq/replays").json()["items"]
    assert [(j["id"], j["created_by"]) for j in listed] == [(job_id, "admin")]
    assert listed[0]["filter"] == {"ids": [entry["id"]]}
    assert (listed[0]["selected"], listed[0]["rate"]) == (1, 50.0)
    job = wait_for_job(api, job_id, "done")
    assert job["counts"]["succeeded"] == 1
    page = client.get(f"/console/replays/{job_id}").text
    assert 'id="job-state">done<' in page
    assert 'id="job-progress">1 of 1<' in page
    assert 'id="job-created-by">admin<' in page
    assert f'href="/console/replays/{job_id}"' in client.get("/console/dead-letters").text


def test_a_replay_needs_the_snapshot_of_the_same_selection(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    api = admin_api(new_client)
    first, second = park(api, agents, 2)
    client, csrf = signed_in(new_client, "admin-key")
    _, snapshot = preview(client, csrf, ids=str(first["id"]))
    without = client.post(
        "/console/dead-letters/replay", data={"csrf": csrf, "ids": str(first["id"])}
    )
    assert without.status_code == 422
    assert "preview the replay first" in refusal(without)
    other = client.post(
        "/console/dead-letters/replay",
        data={"csrf": csrf, "ids": str(second["id"]), "snapshot": snapshot},
    )
    assert other.status_code == 422
    assert "another selection" in refusal(other)
    # A forged token nesting 5,000 lists deep (a 500 before): the API's length cap holds here.
    forged = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    deep = client.post(
        "/console/dead-letters/replay",
        data={"csrf": csrf, "ids": str(first["id"]), "snapshot": forged},
    )
    assert deep.status_code == 422
    assert "not one this server issued" in refusal(deep)
    assert api.get("/dlq/replays").json()["items"] == []


def test_the_console_refuses_an_id_past_64_bits_and_a_rate_the_api_refuses(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    """Form errors (422), never a 500 (SQLite's driver overflowing), and never a job whose pace
    (1e-300 per second) never comes: the console's bounds are the API's."""
    api = admin_api(new_client)
    (entry,) = park(api, agents, 1)
    client, csrf = signed_in(new_client, "admin-key")
    for ids in (str(2**63), "0"):
        refused = client.post("/console/dead-letters/preview", data={"csrf": csrf, "ids": ids})
        assert refused.status_code == 422, refused.text
        assert "ids: dead-letter ids are between 1 and" in refusal(refused)
    # Digits as the API takes them: Python's int also read "1_0" as 10 and other scripts' digits.
    for ids in ("1_0", "+1", "\u0661", "1e3", "9" * 20):
        refused = client.post("/console/dead-letters/preview", data={"csrf": csrf, "ids": ids})
        assert refused.status_code == 422, (ids, refused.text)
    too_many = ",".join(str(n) for n in range(1, 1002))  # the API's bound, 1,000 (2,000 before)
    refused = client.post("/console/dead-letters/preview", data={"csrf": csrf, "ids": too_many})
    assert refused.status_code == 422
    assert "ids: at most 1000 at once" in refusal(refused)
    _, snapshot = preview(client, csrf, ids=str(entry["id"]))
    for rate in ("1e-300", "0.001", "10001"):
        refused = client.post(
            "/console/dead-letters/replay",
            data={"csrf": csrf, "ids": str(entry["id"]), "snapshot": snapshot, "rate": rate},
        )
        assert refused.status_code == 422, refused.text
        message = refusal(refused)
        assert "rate: between 0.01 and 10000 entries per second" in message
    assert api.get("/dlq/replays").json()["items"] == []


def test_a_console_job_is_cancelled_and_resumed_by_an_admin_only(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    api = admin_api(new_client)
    park(api, agents, 3)
    client, csrf = signed_in(new_client, "admin-key")
    reader, reader_csrf = signed_in(new_client, "reader-key")
    _, snapshot = preview(client, csrf, kind="one")
    started = client.post(
        "/console/dead-letters/replay",
        data={"csrf": csrf, "kind": "one", "agent": "", "snapshot": snapshot, "rate": "0.5"},
    )
    job_id = job_of(started)
    forged = reader.post(f"/console/replays/{job_id}/cancel", data={"csrf": reader_csrf})
    assert forged.status_code == 403
    with structlog.testing.capture_logs() as logs:
        cancelled = client.post(f"/console/replays/{job_id}/cancel", data={"csrf": csrf})
    assert cancelled.status_code == 303
    # It stops after the entry in hand: at 0.5 per second, before the third.
    job = wait_for_job(api, job_id, "cancelled")
    assert job["counts"]["replayed"] < 3
    assert len(api.get("/dlq").json()["items"]) == 3 - job["counts"]["replayed"]
    page = client.get(f"/console/replays/{job_id}").text
    assert 'id="resume-replay"' in page
    assert 'id="resume-replay"' not in reader.get(f"/console/replays/{job_id}").text
    assert (
        reader.post(f"/console/replays/{job_id}/resume", data={"csrf": reader_csrf}).status_code
        == 403
    )
    with structlog.testing.capture_logs() as more:
        resumed = client.post(f"/console/replays/{job_id}/resume", data={"csrf": csrf})
    assert resumed.status_code == 303
    actions = [
        (e["action"], e["key"]) for e in [*logs, *more] if e.get("event") == "console.action"
    ]
    assert actions == [("replay_cancelled", "admin"), ("replay_resumed", "admin")]
    done = wait_for_job(api, job_id, "done")
    assert done["counts"]["replayed"] == 3
    assert api.get("/dlq").json()["items"] == []


def test_a_signal_page_shows_its_routing_version_and_its_replay_with_the_job(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    api = admin_api(new_client)
    (entry,) = park(api, agents, 1)
    client, csrf = signed_in(new_client, "admin-key")
    _, snapshot = preview(client, csrf, ids=str(entry["id"]))
    started = client.post(
        "/console/dead-letters/replay",
        data={"csrf": csrf, "ids": str(entry["id"]), "snapshot": snapshot, "rate": "50"},
    )
    job_id = job_of(started)
    wait_for_job(api, job_id, "done")
    logged = api.get(f"/logs/{entry['log_id']}").json()
    assert logged["routing_version"]
    page = client.get(f"/console/signals/{entry['log_id']}").text
    version = re.search(r'id="decision-version"><code>([^<]+)</code>', page)
    assert version is not None
    assert version.group(1) == logged["routing_version"]
    history = page[
        page.index('id="delivery-history"') : page.index(
            "</table>", page.index('id="delivery-history"')
        )
    ]
    rows = re.findall(r'<tr class="(original|replay)">', history)
    assert rows == [h["attempt"] for h in logged["delivery_history"]] == ["original", "replay"]
    assert f'<a href="/console/replays/{job_id}">job {job_id}</a>' in history
    assert "outcome-succeeded" in history


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
    # Read as POST /route/explain reads a body: its depth limit (a 500 at 1,000 levels before),
    # no duplicate keys.
    deep = "[" * 1000 + "1" + "]" * 1000
    too_deep = client.post(
        "/console/rules/explain", data={"csrf": csrf, "payload": f'{{"route": {deep}}}'}
    )
    assert too_deep.status_code == 422
    assert "Refused: JSON nesting" in too_deep.text
    twice = client.post("/console/rules/explain", data={"csrf": csrf, "payload": '{"a":1,"a":2}'})
    assert twice.status_code == 422
    assert "duplicate object key" in twice.text
    # A body declared over MAX_BODY_BYTES is refused from its Content-Length, before it is read
    # (sending it all would race the server's close: the client could see a reset instead).
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    url = httpx.URL(str(client.base_url))
    head = (
        f"POST /console/rules/explain HTTP/1.1\r\nHost: {url.host}\r\nCookie: {cookie}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {300 * 1024}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.host, url.port), timeout=10) as raw:
        raw.sendall(head)
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    as_json = client.post(
        "/console/rules/explain", json={"payload": "{}"}, headers={"X-CSRF": csrf}
    )
    assert as_json.status_code == 415


def test_the_explain_box_shows_the_operations_trace_with_each_rules_reason(
    new_client: Callable[[], httpx.Client],
) -> None:
    client, csrf = signed_in(new_client, "reader-key")
    payload = '{"route": "fanout"}'
    answer = client.post("/console/rules/explain", data={"csrf": csrf, "payload": payload})
    assert answer.status_code == 200
    text = html.unescape(answer.text)
    # The same trace as POST /route/explain: a rule that did not match says why.
    api = admin_api(new_client)
    trace = api.post(
        "/route/explain", json={"sender_id": "console", "payload": {"route": "fanout"}}
    ).json()
    first = trace["rules"][0]
    assert (first["id"], first["matched"]) == ("route-one", False)
    assert first["why"] == "equals 'one' at route: found 'fanout', no match"
    assert first["why"] in text
    assert 'data-rule="route-one"' in text
    assert '<li class="won" data-rule="route-fanout">' in text
    assert 'id="explain-rule">route-fanout<' in text
    plan = text[
        text.index('id="explain-plan"') : text.index("</table>", text.index('id="explain-plan"'))
    ]
    assert re.findall(r"<td>(alpha|beta|gamma)</td>", plan) == ["alpha", "beta", "gamma"]
    assert "circuit-closed" in plan
    assert "mode <strong>aggregate</strong>" in text


def test_the_rules_page_says_when_shadow_routing_is_off(
    new_client: Callable[[], httpx.Client],
) -> None:
    client, _ = signed_in(new_client, "reader-key")
    page = client.get("/console/rules").text
    assert 'id="shadow-off"' in page
    assert 'id="shadow-diffs"' not in page


@pytest.fixture
def shadowed(
    database_url: str, routing_file: Path, agents: RunningAgents, tmp_path: Path
) -> Iterator[tuple[RouterServer, Path]]:
    """A second router with SHADOW_ROUTING_CONFIG: the candidate routes kind one as race."""
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(routing_yaml(agents, kind_of={"one": "race"}))
    settings = make_settings(
        database_url, routing_file, api_key=None, api_keys=KEYS, shadow_routing_config=candidate
    )
    server = RouterServer(settings).start()
    try:
        yield server, candidate
    finally:
        server.stop()


def test_the_rules_page_shows_the_shadow_version_and_this_processs_differences(
    shadowed: tuple[RouterServer, Path],
) -> None:
    server, candidate = shadowed
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        api_headers = {"X-API-Key": "admin-key"}
        for kind in ("one", "one", "chain"):  # chain routes the same in both files
            body = {"sender_id": "shadow", "payload": {"route": kind}}
            assert client.post("/route", json=body, headers=api_headers).status_code == 200
        assert client.post("/console/sign-in", data={"api_key": "reader-key"}).status_code == 303
        page = client.get("/console/rules").text
    assert f'id="shadow-version-id">{read_version(candidate).version}<' in page
    assert "by this process" in page
    diffs = page[
        page.index('id="shadow-diffs"') : page.index("</table>", page.index('id="shadow-diffs"'))
    ]
    assert re.findall(
        r"<tr><td>([^<]*)</td><td>([^<]*)</td><td class=\"num\">(\d+)</td></tr>", diffs
    ) == [("one", "race", "2")]


def test_the_console_refuses_a_filter_past_the_calendar_and_a_nul(
    new_client: Callable[[], httpx.Client],
) -> None:
    """422s with the reason, never a 500 (a datetime overflowing in UTC) or a 503 (Postgres
    refusing a NUL in text, as if the database were down)."""
    client, csrf = signed_in(new_client, "admin-key")
    late = client.get("/console/signals", params={"until": "9999-12-31T23:59:59-01:00"})
    assert late.status_code == 422
    assert "until is out of range" in refusal(late)
    assert client.get("/console/signals/a%00b").status_code == 422
    for field in ("agent", "kind"):
        nul = client.post("/console/dead-letters/preview", data={"csrf": csrf, field: "a\x00"})
        assert nul.status_code == 422
        assert "NUL" in refusal(nul)


@pytest.fixture
def proxied(database_url: str, agents: RunningAgents, tmp_path: Path) -> Iterator[RouterServer]:
    """A router behind a trusted proxy (this machine's loopback address), whose agent ``dead``
    is called with a password and a token in its url."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        routing_yaml(agents).replace(
            "http://127.0.0.1:9/agents/dead", "http://ops:S3cret@127.0.0.1:9/agents/dead?token=t0k"
        )
    )
    settings = make_settings(
        database_url, routing, api_key=None, api_keys=KEYS, trusted_proxies="127.0.0.1/32"
    )
    server = RouterServer(settings)
    try:
        yield server.start()
    finally:
        server.stop()


def test_an_agents_password_and_token_are_shown_by_neither_the_console_nor_explain(
    proxied: RouterServer,
) -> None:
    with httpx.Client(base_url=proxied.base_url, timeout=30) as client:
        assert client.post("/console/sign-in", data={"api_key": "reader-key"}).status_code == 303
        rules = client.get("/console/rules").text
        body = {"sender_id": "ex", "payload": {"route": "deadend"}}
        trace = client.post("/route/explain", json=body, headers={"X-API-Key": "admin-key"})
    shown = "http://ops:***@127.0.0.1:9/agents/dead?token=***"
    assert f"<code>{shown}</code>" in rules
    assert [agent["url"] for agent in trace.json()["plan"]["agents"]] == [shown]
    assert "S3cret" not in rules + trace.text
    assert "t0k" not in rules + trace.text


def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(
    router: RouterServer, proxied: RouterServer
) -> None:
    """``X-Forwarded-Proto: https`` from a trusted proxy makes the cookie ``Secure`` (sign-out's
    deletion too); from any other peer the header proves nothing."""
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=proxied.base_url, timeout=30) as client:
        signed = client.post("/console/sign-in", data={"api_key": "reader-key"}, headers=https)
        # A Secure cookie does not come back over this test's plain HTTP: sign in without it.
        plain = client.post("/console/sign-in", data={"api_key": "reader-key"})
        page = client.get("/console/signals").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        out = client.post("/console/sign-out", data={"csrf": csrf.group(1)}, headers=https)
    assert signed.status_code == out.status_code == plain.status_code == 303
    assert "; Secure" in signed.headers["set-cookie"]
    assert "; Secure" in out.headers["set-cookie"]
    assert "Secure" not in plain.headers["set-cookie"]
    with httpx.Client(base_url=router.base_url, timeout=30) as client:
        untrusted = client.post("/console/sign-in", data={"api_key": "reader-key"}, headers=https)
    assert untrusted.status_code == 303
    assert "Secure" not in untrusted.headers["set-cookie"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://elsewhere.example"},
        {"Origin": "null"},
    ],
)
def test_a_sign_in_sent_from_another_sites_page_is_refused(
    new_client: Callable[[], httpx.Client], headers: dict[str, str]
) -> None:
    """Login CSRF: a page elsewhere posting its own key would sign its visitor in under it."""
    client = new_client()
    refused = client.post("/console/sign-in", data={"api_key": "reader-key"}, headers=headers)
    assert refused.status_code == 403
    assert "console's own pages" in refusal(refused)
    assert "router_console" not in client.cookies


def test_a_sign_in_from_the_consoles_own_page_is_taken(
    router: RouterServer, new_client: Callable[[], httpx.Client]
) -> None:
    host = httpx.URL(router.base_url).netloc.decode()
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://elsewhere.example"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": f"http://{host}"},
        {},  # no browser: curl, a script
    ):
        answer = new_client().post(
            "/console/sign-in", data={"api_key": "reader-key"}, headers=headers
        )
        assert answer.status_code == 303, headers


def test_a_full_process_shows_the_preview_or_the_job_again_with_why_nothing_started(
    new_client: Callable[[], httpx.Client], agents: RunningAgents
) -> None:
    """``REPLAY_MAX_JOBS`` (4) jobs running: the console's start and resume answer 429 with the
    page the operator was on and the reason, not a JSON error."""
    api = admin_api(new_client)
    park(api, agents, 6)
    client, csrf = signed_in(new_client, "admin-key")
    _, snapshot = preview(client, csrf, kind="one")

    def start_by_api() -> int:
        started = api.post("/dlq/replay", json={"kind": "one", "rate": 0.01})
        assert started.status_code == 202, started.text
        return int(started.json()["job"]["id"])

    def started_once_room() -> int:
        """A job stopped says so just before its runner lets go of its slot."""
        started = wait_for(
            lambda: (
                (answer := api.post("/dlq/replay", json={"kind": "one", "rate": 0.01})).status_code
                == 202
                and answer
            )
        )
        return int(started.json()["job"]["id"])

    jobs = [start_by_api() for _ in range(4)]  # each sends one entry, then waits 100 s
    refused = client.post(
        "/console/dead-letters/replay",
        data={"csrf": csrf, "kind": "one", "agent": "", "snapshot": snapshot, "rate": "1"},
    )
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["content-type"].startswith("text/html")
    assert 'id="replay-error"' in refused.text
    assert "runs 4 replay jobs, the most it runs at once" in html.unescape(refused.text)
    assert 'name="snapshot" value="' in refused.text  # the same preview, to try again from
    assert len(api.get("/dlq/replays").json()["items"]) == 4

    assert client.post(f"/console/replays/{jobs[0]}/cancel", data={"csrf": csrf}).is_redirect
    wait_for_job(api, jobs[0], "cancelled")
    jobs.append(started_once_room())
    not_resumed = client.post(f"/console/replays/{jobs[0]}/resume", data={"csrf": csrf})
    assert not_resumed.status_code == 429
    assert 'id="resume-error"' in not_resumed.text
    assert 'id="job-state">cancelled<' in not_resumed.text

    for job_id in jobs[1:]:
        assert api.post(f"/dlq/replays/{job_id}/cancel").status_code == 200
    for job_id in jobs:
        wait_for_job(api, job_id, "cancelled")
