"""Modes, retries, deadlines and dead letters, against real agents told how to misbehave."""

from __future__ import annotations

import httpx

from router_service.devtools.demo_agents import RunningAgents
from tests.support.db import query
from tests.support.metrics import metric
from tests.support.polling import wait_for
from tests.support.server import RouterServer


def send(client: httpx.Client, kind: str, **extra: object) -> httpx.Response:
    return client.post("/route", json={"sender_id": "modes", "payload": {"route": kind}, **extra})


def test_first_success_takes_the_first_2xx_and_cancels_the_loser(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("beta", mode="hang")
    response = send(client, "race")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "delivered"
    assert body["response"]["agent"] == "alpha"
    by_agent = {r["agent"]: r for r in body["results"]}
    assert by_agent["alpha"]["ok"] is True
    assert by_agent["beta"]["error"] == "cancelled"
    assert body["latency_ms"] < 500  # beta's timeout is 500 ms: it was not waited for


def test_fallback_tries_agents_in_table_order(client: httpx.Client, agents: RunningAgents) -> None:
    agents.set("alpha", mode="fail", status=400)
    agents.set("beta", mode="fail", status=404)
    response = send(client, "chain")
    body = response.json()
    assert response.status_code == 200
    assert [r["agent"] for r in body["results"]] == ["alpha", "beta", "gamma"]
    assert body["response"]["agent"] == "gamma"
    assert len(agents.received("alpha")) == len(agents.received("beta")) == 1


def test_aggregate_calls_everyone_and_partial_dead_letters_each_failure(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    agents.set("beta", mode="fail", status=500)
    agents.set("gamma", mode="fail", status=422)
    response = send(client, "fanout")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial"
    assert body["response"]["alpha"]["agent"] == "alpha"
    assert body["response"]["beta"] is None
    letters = query(
        database_url,
        "SELECT agent, status FROM dead_letters WHERE log_id = $1 ORDER BY agent",
        body["log_id"],
    )
    assert letters == [
        {"agent": "beta", "status": "pending"},
        {"agent": "gamma", "status": "pending"},
    ]


def test_aggregate_all_ok_is_delivered(client: httpx.Client, agents: RunningAgents) -> None:
    body = send(client, "fanout").json()
    assert body["status"] == "delivered"
    assert set(body["response"]) == {"alpha", "beta", "gamma"}


def test_retries_then_success(client: httpx.Client, agents: RunningAgents) -> None:
    before = metric(client, "retry_attempts_total")
    errors_before = metric(client, "routing_errors_total")
    agents.set("alpha", script=[{"status": 503}, {"status": 429, "retry_after": 0}])
    body = send(client, "one").json()
    assert body["status"] == "delivered"
    assert body["results"][0]["attempts"] == 3
    assert len(agents.received("alpha")) == 3
    assert metric(client, "retry_attempts_total") - before == 2
    assert metric(client, "routing_errors_total") - errors_before == 2


def test_non_retryable_4xx_is_not_retried_and_is_dead_lettered(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=400)
    response = send(client, "one")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "dead_lettered"
    assert body["results"][0]["attempts"] == 1
    assert body["results"][0]["status_code"] == 400


def test_retries_exhausted_land_in_dead_letter_queue(
    client: httpx.Client, agents: RunningAgents
) -> None:
    dlq_before = metric(client, "dlq_total")
    agents.set("alpha", mode="fail", status=503)
    response = send(client, "one")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "dead_lettered"
    assert body["results"][0]["attempts"] == 3
    assert len(agents.received("alpha")) == 3
    assert metric(client, "dlq_total") - dlq_before == 1
    # Counted off the request, soon after it (service/backlog.py).
    wait_for(lambda: metric(client, "dlq_backlog") == 1, what="the backlog counted at 1")
    [entry] = client.get("/dlq").json()["items"]
    assert entry["log_id"] == body["log_id"]
    assert entry["agent"] is None
    assert entry["status"] == "pending"
    assert entry["payload"] == {"route": "one"}
    assert entry["attempts"] == 3


def test_connection_refused_is_retried_then_dead_lettered(client: httpx.Client) -> None:
    response = send(client, "deadend")
    assert response.status_code == 202
    result = response.json()["results"][0]
    assert result["attempts"] == 3
    assert "connection" in result["error"]


def test_hanging_agent_is_cut_at_its_timeout_within_the_deadline(
    client: httpx.Client, agents: RunningAgents, router: RouterServer
) -> None:
    agents.set("alpha", mode="hang")
    response = send(client, "one")
    assert response.status_code == 202
    result = response.json()["results"][0]
    assert "timed out" in result["error"]
    deadline_ms = router.settings.request_deadline_ms
    assert response.json()["latency_ms"] < deadline_ms + 250


def test_drip_feeding_agent_cannot_stretch_its_attempt(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="drip", interval_ms=100)
    result = send(client, "one").json()["results"][0]
    assert result["ok"] is False
    assert "timed out" in result["error"]


def test_retry_after_beyond_the_deadline_is_not_waited_for(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=429, retry_after=60)
    response = send(client, "one")
    assert response.status_code == 202
    assert response.json()["results"][0]["attempts"] == 1
    assert response.json()["latency_ms"] < 1000


def test_non_json_answer_is_kept_as_text(client: httpx.Client, agents: RunningAgents) -> None:
    agents.set("alpha", mode="non_json")
    body = send(client, "one").json()
    assert body["status"] == "delivered"
    assert isinstance(body["response"]["text"], str)


def test_mode_override_turns_a_race_into_an_aggregate(
    client: httpx.Client, agents: RunningAgents
) -> None:
    body = send(client, "race", mode="aggregate").json()
    assert body["mode"] == "aggregate"
    assert set(body["response"]) == {"alpha", "beta"}
