"""GET /logs, /health and /metrics."""

from __future__ import annotations

import re

import httpx

from router_service.devtools.demo_agents import RunningAgents


def post(client: httpx.Client, sender: str, kind: str, **extra: object) -> str:
    response = client.post(
        "/route", json={"sender_id": sender, "payload": {"route": kind}, **extra}
    )
    assert response.status_code in (200, 202)
    return str(response.json()["log_id"])


def test_logs_newest_first_with_filters_and_cursor(
    client: httpx.Client, agents: RunningAgents
) -> None:
    ids = [post(client, "alice", "one") for _ in range(3)]
    post(client, "bob", "race")
    page = client.get("/logs", params={"sender_id": "alice", "limit": 2}).json()
    assert [i["log_id"] for i in page["items"]] == ids[::-1][:2]
    rest = client.get(
        "/logs", params={"sender_id": "alice", "limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [i["log_id"] for i in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None
    assert len(client.get("/logs").json()["items"]) == 4
    assert [
        i["sender_id"] for i in client.get("/logs", params={"kind": "race"}).json()["items"]
    ] == ["bob"]
    item = page["items"][0]
    assert set(item) >= {
        "log_id",
        "trace_id",
        "sender_id",
        "kind",
        "rule",
        "status",
        "routed_agents",
        "payload",
        "metadata",
        "response",
        "created_at",
        "updated_at",
        "latency_ms",
    }
    assert item["payload"] == {"route": "one"}


def test_logs_status_and_time_filters(client: httpx.Client, agents: RunningAgents) -> None:
    agents.set("alpha", mode="fail", status=400)
    failed = post(client, "carol", "one")
    agents.set("alpha", mode="ok")
    post(client, "carol", "one")
    items = client.get("/logs", params={"status": "dead_lettered"}).json()["items"]
    assert [i["log_id"] for i in items] == [failed]
    created = client.get(f"/logs/{failed}").json()["created_at"]
    later = client.get("/logs", params={"since": created}).json()["items"]
    assert failed in [i["log_id"] for i in later]
    assert client.get("/logs", params={"until": created}).json()["items"] == []


def test_logs_reject_bad_parameters(client: httpx.Client) -> None:
    assert client.get("/logs", params={"limit": 0}).status_code == 422
    assert client.get("/logs", params={"limit": 501}).status_code == 422
    assert client.get("/logs", params={"since": "not a date"}).status_code == 422
    # RFC 3339 with an offset, as in every body: a lax reading took 2027 for Unix second 2027
    # (every signal since 1970) and a date or a time without an offset for UTC's.
    for lax in ("2027", "1700000000", "-1", "2026-12-05", "2026-12-05T06:00:00"):
        for bound in ("since", "until"):
            refused = client.get("/logs", params={bound: lax})
            assert refused.status_code == 422, (bound, lax, refused.text)
            assert refused.json()["error"]["message"].startswith(f"{bound} must be an RFC 3339")
    assert client.get("/logs", params={"cursor": "garbage!"}).status_code == 422
    assert client.get("/logs", params={"status": "bogus"}).status_code == 422


def test_a_log_id_with_a_slash_is_fetched_by_it(client: httpx.Client) -> None:
    """A client's own log_id may hold "/" (it is visible ASCII); ``/logs/{log_id}`` matched one
    path segment only, so such a signal was accepted and then never found (404)."""
    body = {"sender_id": "u", "log_id": "orders/2026/42", "payload": {"route": "one"}}
    assert client.post("/route", json=body).status_code == 200
    for path in ("/logs/orders/2026/42", "/logs/orders%2F2026%2F42"):
        found = client.get(path)
        assert found.status_code == 200, path
        assert found.json()["log_id"] == "orders/2026/42"
    assert client.get("/logs/orders/2026").status_code == 404


def test_logs_need_a_key(client: httpx.Client) -> None:
    assert httpx.get(f"{client.base_url}/logs").status_code == 401
    assert httpx.get(f"{client.base_url}/dlq").status_code == 401
    assert httpx.post(f"{client.base_url}/dlq/replay", json={"limit": 1}).status_code == 401


def test_health_reports_the_database(client: httpx.Client) -> None:
    response = httpx.get(f"{client.base_url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert httpx.get(f"{client.base_url}/health/live").json() == {"status": "ok"}


def test_metrics_expose_the_six_core_names_without_a_key(
    client: httpx.Client, agents: RunningAgents
) -> None:
    post(client, "m", "one")
    agents.set("alpha", mode="fail", status=503)
    post(client, "m", "one")
    text = httpx.get(f"{client.base_url}/metrics").text
    for name in (
        'signals_received_total{kind="one"}',
        'router_latency_seconds_bucket{kind="one",le="0.005"}',
        'routing_errors_total{agent="alpha"}',
        "dlq_total ",
        "retry_attempts_total ",
        "dlq_backlog ",
        'agent_call_latency_seconds_count{agent="alpha",outcome="ok"}',
        "router_in_flight_requests ",
    ):
        assert name in text, name
    # No sender label anywhere (the fairness metrics are named after senders, never labelled).
    assert not re.search(r'[{,]sender(_id)?="', text)
    assert '"m"' not in text  # the sender's value appears in no label
    assert "m" not in [line.split("{")[0] for line in text.splitlines()]


def test_head_answers_what_get_answers_without_the_body(client: httpx.Client) -> None:
    """RFC 9110: what answers GET answers HEAD (some load balancers' health checks use it); it
    was 405 on every GET endpoint. A POST-only path still refuses it."""
    for path in ("/health/live", "/health", "/metrics", "/logs", "/dlq", "/dlq/replays"):
        got = client.get(path)
        head = client.head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert "traceparent" in head.headers
    assert client.head("/logs/no-such-signal").status_code == 404
    refused = client.head("/route")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    # The connection carries on after an answer with headers and no body.
    assert client.get("/health/live").json()["status"] == "ok"
