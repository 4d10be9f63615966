"""POST /route over real HTTP: every error status, and the answer's shape."""

from __future__ import annotations

import re

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.support.db import query
from tests.support.server import RouterServer


def route(client: httpx.Client, body: object, **kwargs: object) -> httpx.Response:
    return client.post("/route", json=body, **kwargs)  # type: ignore[arg-type]


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return str(body["error"]["code"])


def test_delivered_answer_has_every_field(client: httpx.Client, agents: RunningAgents) -> None:
    response = route(client, {"sender_id": "s1", "payload": {"route": "one", "text": "hi"}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "log_id",
        "trace_id",
        "kind",
        "rule",
        "mode",
        "routed_agents",
        "status",
        "results",
        "response",
        "duplicate",
        "latency_ms",
    }
    assert body["kind"] == "one"
    assert body["rule"] == "route-one"
    assert body["mode"] == "first_success"
    assert body["routed_agents"] == ["alpha"]
    assert body["status"] == "delivered"
    assert body["duplicate"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert response.headers["traceparent"].split("-")[1] == body["trace_id"]
    [result] = body["results"]
    assert result["agent"] == "alpha"
    assert result["ok"] is True
    assert result["status_code"] == 200
    assert result["attempts"] == 1
    assert result["error"] is None
    assert body["response"] == result["response"]
    assert body["response"]["log_id"] == body["log_id"]


def test_agent_receives_signal_with_idempotency_key_and_trace(
    client: httpx.Client, agents: RunningAgents
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = route(
        client,
        {
            "sender_id": "s2",
            "payload": {"route": "one", "n": 1},
            "metadata": {"source": "test"},
            "timestamp": "2026-01-01T00:00:00+00:00",
        },
        headers={"traceparent": parent},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    [received] = agents.received("alpha")
    assert received["body"] == {
        "log_id": body["log_id"],
        "sender_id": "s2",
        "kind": "one",
        "payload": {"route": "one", "n": 1},
        "metadata": {"source": "test"},
        "timestamp": "2026-01-01T00:00:00.000000Z",
    }
    headers = received["headers"]
    assert headers["idempotency-key"] == body["log_id"]
    assert headers["content-type"] == "application/json"
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert (version, trace_id) == ("00", body["trace_id"])
    assert span_id != "b7ad6b7169203331"


def test_missing_key_is_401_before_the_body_is_read(client: httpx.Client) -> None:
    # Not JSON and too large: only authentication can have produced the answer.
    response = httpx.post(
        f"{client.base_url}/route",
        content=b"{" * 300_000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert error_of(response) == "unauthorized"


def test_wrong_key_is_401(client: httpx.Client) -> None:
    response = route(client, {"sender_id": "s", "payload": {}}, headers={"X-API-Key": "nope"})
    assert response.status_code == 401
    assert error_of(response) == "unauthorized"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"sender_id": "s", "payload": {"x": NaN}}', b'{"a": 1, "a": 2}', b"\xff\xfe"],
    ids=["syntax", "nan", "duplicate-key", "not-utf8"],
)
def test_malformed_json_is_400(client: httpx.Client, content: bytes) -> None:
    response = client.post("/route", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response) == "invalid_json"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/route", content=b'{"sender_id":"s","payload":{}}', headers=headers)
    assert response.status_code == 415
    assert error_of(response) == "unsupported_media_type"


def test_body_over_limit_is_413(client: httpx.Client) -> None:
    big = {"sender_id": "s", "payload": {"blob": "x" * (256 * 1024)}}
    response = route(client, big)
    assert response.status_code == 413
    assert error_of(response) == "payload_too_large"


def test_chunked_body_over_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> object:
        yield b'{"sender_id": "s", "payload": {"blob": "'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"}}'

    response = client.post(
        "/route",
        content=chunks(),
        headers={"Content-Type": "application/json"},  # type: ignore[arg-type]
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {}}, "sender_id"),
        ({"sender_id": "", "payload": {}}, "sender_id"),
        ({"sender_id": "x" * 257, "payload": {}}, "sender_id"),
        ({"sender_id": "s", "payload": []}, "payload"),
        ({"sender_id": "s"}, "payload"),
        ({"sender_id": "s", "payload": {}, "log_id": "x" * 129}, "log_id"),
        ({"sender_id": "s", "payload": {}, "log_id": "a\u0017b"}, "log_id"),
        ({"sender_id": "s", "payload": {}, "log_id": "two words"}, "log_id"),
        ({"sender_id": "s", "payload": {}, "log_id": "x\r\nInjected: 1"}, "log_id"),
        ({"sender_id": "s", "payload": {}, "timestamp": "yesterday"}, "timestamp"),
        ({"sender_id": "s", "payload": {}, "timestamp": "2026-01-01T00:00:00"}, "timestamp"),
        ({"sender_id": "s", "payload": {}, "mode": "broadcast"}, "mode"),
        ({"sender_id": "s", "payload": {}, "surprise": 1}, "surprise"),
        ([1, 2], "object"),
    ],
)
def test_schema_violations_are_422(client: httpx.Client, body: object, field: str) -> None:
    response = route(client, body)
    assert response.status_code == 422
    assert error_of(response) == "validation_error"
    assert field in response.json()["error"]["message"]


def test_nesting_deeper_than_limit_is_422(client: httpx.Client) -> None:
    deep: object = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    response = route(client, {"sender_id": "s", "payload": deep})
    assert response.status_code == 422
    assert "nesting" in response.json()["error"]["message"]


def test_unknown_path_is_json_404(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert error_of(response) == "not_found"


def test_unknown_log_is_404(client: httpx.Client) -> None:
    response = client.get("/logs/does-not-exist")
    assert response.status_code == 404
    assert error_of(response) == "not_found"


def test_route_answer_is_committed_before_it_is_sent(
    client: httpx.Client, router: RouterServer, database_url: str
) -> None:
    response = route(client, {"sender_id": "durable", "payload": {"route": "one"}})
    log_id = response.json()["log_id"]
    rows = query(database_url, "SELECT status, sender_id FROM signals WHERE log_id = $1", log_id)
    assert rows == [{"status": "delivered", "sender_id": "durable"}]


def test_nul_and_lone_surrogate_never_make_a_500(client: httpx.Client) -> None:
    nul = route(client, {"sender_id": "s", "payload": {"route": "one", "t": "a\u0000b"}})
    assert nul.status_code == 200
    assert nul.json()["response"]["handled"] is True
    meta = route(
        client, {"sender_id": "s", "payload": {"route": "one"}, "metadata": {"k": "\u0000"}}
    )
    assert meta.status_code == 200
    bad_sender = route(client, {"sender_id": "a\u0000", "payload": {}})
    assert bad_sender.status_code == 422
    surrogate = client.post(
        "/route",
        content=b'{"sender_id": "s", "payload": {"t": "\\ud800"}}',
        headers={"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 400


def test_integers_beyond_64_bits_are_kept_exactly(client: httpx.Client) -> None:
    huge = -439999558299931050508288
    response = route(
        client, {"sender_id": "s", "payload": {"route": "one", "n": huge}, "metadata": {"m": huge}}
    )
    assert response.status_code == 200
    log = client.get(f"/logs/{response.json()['log_id']}").json()
    assert log["payload"]["n"] == huge
    assert log["metadata"]["m"] == huge
