"""A2A agents end to end: a router on each backend delivers to real demo A2A agents (1.0 and
0.3) over loopback, and every outcome of the mapping table lands where docs/delivery.md says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.support.metrics import metric, sample
from tests.support.routing_files import agent, by_route, routing_text


@pytest.fixture(scope="module")
def routing_file(tmp_path_factory: pytest.TempPathFactory, agents: RunningAgents) -> Path:
    path = tmp_path_factory.mktemp("a2a") / "routing.yaml"
    path.write_text(
        routing_text(
            [
                agent("seer", agents.a2a_url("seer"), protocol="a2a"),
                agent("elder", agents.a2a_url("elder", "0.3"), protocol="a2a", a2a_version="0.3"),
                agent("alpha", agents.url("alpha")),
            ],
            {
                "new": {"agents": ["seer"]},
                "old": {"agents": ["elder"]},
                "fan": {"agents": ["seer", "alpha"], "mode": "aggregate"},
                "default": {"agents": ["alpha"]},
            },
            [by_route(route, rule_id=f"r-{route}") for route in ("new", "old", "fan")],
        )
    )
    return path


AGENT = {"new": "seer", "old": "elder"}


def send(client: httpx.Client, route: str, **payload: Any) -> httpx.Response:
    body = {"sender_id": "a2a-sender", "payload": {"route": route, **payload}}
    return client.post("/route", json=body)


def test_completed_task_is_delivered_with_the_a2a_result_unchanged(
    client: httpx.Client, agents: RunningAgents
) -> None:
    response = send(client, "new", message="please check the invoice", n=1)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "delivered"
    task = body["response"]["task"]
    assert task["status"] == {"state": "TASK_STATE_COMPLETED"}
    assert task["id"] == f"task-{body['log_id'][:16]}"
    [request] = agents.received("seer")
    rpc = request["body"]
    assert rpc["jsonrpc"] == "2.0"
    assert rpc["method"] == "SendMessage"
    message = rpc["params"]["message"]
    assert message["messageId"] == body["log_id"]
    assert message["role"] == "ROLE_USER"
    assert message["parts"] == [
        {"text": "please check the invoice"},
        {
            "data": {"route": "new", "message": "please check the invoice", "n": 1},
            "mediaType": "application/json",
        },
    ]
    assert message["metadata"]["sender_id"] == "a2a-sender"
    assert message["metadata"]["kind"] == "new"
    assert message["metadata"]["trace_id"] == body["trace_id"]
    assert rpc["params"]["configuration"] == {"returnImmediately": False}
    headers = request["headers"]
    assert headers["idempotency-key"] == body["log_id"]
    assert headers["traceparent"].split("-")[1] == body["trace_id"]
    assert headers["a2a-version"] == "1.0"


def test_version_0_3_speaks_message_send_and_a_message_result_is_delivered(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("elder", mode="message")
    response = send(client, "old", n=2)  # no "message" string: only the data part
    body = response.json()
    assert body["status"] == "delivered"
    assert body["response"]["kind"] == "message"
    assert body["response"]["role"] == "agent"
    [request] = agents.received("elder")
    rpc = request["body"]
    assert rpc["method"] == "message/send"
    assert rpc["params"]["configuration"] == {"blocking": True}
    message = rpc["params"]["message"]
    assert message["kind"] == "message"
    assert message["messageId"] == body["log_id"]
    assert message["parts"] == [{"kind": "data", "data": {"route": "old", "n": 2}}]
    assert request["headers"]["a2a-version"] == "0.3"


@pytest.mark.parametrize("route", ["new", "old"])
@pytest.mark.parametrize("state", ["failed", "rejected", "canceled"])
def test_a_refused_task_is_dead_lettered_without_retry(
    client: httpx.Client, agents: RunningAgents, route: str, state: str
) -> None:
    agents.set(AGENT[route], mode="task", state=state)
    response = send(client, route, state=state)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "dead_lettered"
    [result] = body["results"]
    assert result["attempts"] == 1
    assert result["error"] == f"A2A task {state}"
    assert len(agents.received(AGENT[route])) == 1
    [entry] = [e for e in client.get("/dlq").json()["items"] if e["log_id"] == body["log_id"]]
    assert f"A2A task {state}" in entry["error"]


@pytest.mark.parametrize("route", ["new", "old"])
def test_a_json_rpc_error_inside_a_200_is_dead_lettered_without_retry(
    client: httpx.Client, agents: RunningAgents, route: str
) -> None:
    agents.set(AGENT[route], mode="rpc_error", code=-32001)
    body = send(client, route).json()
    assert body["status"] == "dead_lettered"
    [result] = body["results"]
    assert result["status_code"] == 200
    assert result["attempts"] == 1
    assert result["error"] == "JSON-RPC error -32001: scripted error"
    assert result["response"]["error"]["code"] == -32001
    assert len(agents.received(AGENT[route])) == 1


@pytest.mark.parametrize(
    "script",
    [
        [{"mode": "fail", "status": 503}, {"mode": "ok"}],
        [{"mode": "fail", "status": 429, "retry_after": 0}, {"mode": "ok"}],
        [{"mode": "hang"}, {"mode": "ok"}],  # the attempt times out
        [{"mode": "task", "state": "working"}, {"mode": "ok"}],
    ],
    ids=["5xx", "429", "timeout", "still-working"],
)
def test_try_later_failures_are_retried_then_delivered(
    client: httpx.Client, agents: RunningAgents, script: list[dict[str, Any]]
) -> None:
    agents.set("seer", mode="ok", script=script)
    body = send(client, "new").json()
    assert body["status"] == "delivered"
    assert body["results"][0]["attempts"] == 2
    received = agents.received("seer")
    assert len(received) == 2
    # The retry is the same message: same id, same idempotency key.
    ids = {r["body"]["params"]["message"]["messageId"] for r in received}
    assert ids == {body["log_id"]}
    assert {r["headers"]["idempotency-key"] for r in received} == {body["log_id"]}


def _needs_input_samples(client: httpx.Client, agent: str) -> float:
    return sample(client, "agent_call_latency_seconds_count", agent=agent, outcome="needs_input")


@pytest.mark.parametrize("route", ["new", "old"])
@pytest.mark.parametrize("state", ["input-required", "auth-required"])
def test_a_task_wanting_input_is_needs_input_in_answer_logs_metrics_and_dlq(
    client: httpx.Client, agents: RunningAgents, route: str, state: str
) -> None:
    agent = AGENT[route]
    before = _needs_input_samples(client, agent)
    agents.set(agent, mode="task", state=state)
    response = send(client, route, state=state)
    assert response.status_code == 202
    body = response.json()
    log_id = body["log_id"]
    assert body["status"] == "dead_lettered"
    [result] = body["results"]
    assert result["status"] == "needs_input"
    assert result["ok"] is False
    assert result["attempts"] == 1  # never retried
    assert result["task_id"] == f"task-{log_id[:16]}"
    assert result["context_id"] == f"ctx-{log_id[:16]}"
    assert len(agents.received(agent)) == 1
    logged = client.get(f"/logs/{log_id}").json()
    assert logged["results"][0]["status"] == "needs_input"
    assert logged["results"][0]["task_id"] == result["task_id"]
    [entry] = [e for e in client.get("/dlq").json()["items"] if e["log_id"] == log_id]
    assert entry["error"].startswith(f"{agent}: needs_input: A2A task {state}")
    assert result["task_id"] in entry["error"]
    assert _needs_input_samples(client, agent) == before + 1


def test_aggregate_with_one_agent_needing_input_is_partial(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("seer", mode="task", state="input-required")
    body = send(client, "fan").json()
    assert body["status"] == "partial"
    by_agent = {r["agent"]: r for r in body["results"]}
    assert by_agent["seer"]["status"] == "needs_input"
    assert by_agent["alpha"]["ok"] is True
    [entry] = [e for e in client.get("/dlq").json()["items"] if e["log_id"] == body["log_id"]]
    assert entry["agent"] == "seer"
    assert entry["error"].startswith("needs_input:")


@pytest.mark.parametrize("route", ["new", "old"])
def test_replay_of_an_a2a_dead_letter_resends_the_same_message_id(
    client: httpx.Client, agents: RunningAgents, route: str
) -> None:
    agent = AGENT[route]
    agents.set(agent, mode="rpc_error")
    parked = send(client, route, replay=True).json()
    assert parked["status"] == "dead_lettered"
    [entry] = [e for e in client.get("/dlq").json()["items"] if e["log_id"] == parked["log_id"]]
    agents.set(agent, mode="ok")
    summary = client.post("/dlq/replay", json={"ids": [entry["id"]]}).json()
    assert summary["succeeded"] == 1
    first, again = agents.received(agent)
    assert again["body"]["params"]["message"]["messageId"] == parked["log_id"]
    assert again["body"]["params"]["message"] == first["body"]["params"]["message"]
    assert again["headers"]["idempotency-key"] == parked["log_id"]
    logged = client.get(f"/logs/{parked['log_id']}").json()
    assert logged["status"] == "delivered"
    assert logged["response"]["task" if route == "new" else "status"]
    assert metric(client, "dlq_backlog") == 0
