"""The dead-letter queue: listing, replay to success, exhaustion, and concurrent replayers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx

from router_service.devtools.demo_agents import RunningAgents
from tests.support.db import query
from tests.support.metrics import metric
from tests.support.polling import wait_for
from tests.support.server import RouterServer


def park(client: httpx.Client, agents: RunningAgents, count: int, kind: str = "one") -> list[str]:
    """Dead-letter ``count`` signals (alpha answers 400, which is never retried)."""
    agents.set("alpha", mode="fail", status=400)
    ids = []
    for index in range(count):
        response = client.post(
            "/route", json={"sender_id": "dlq", "payload": {"route": kind, "i": index}}
        )
        assert response.status_code in (200, 202)
        ids.append(response.json()["log_id"])
    agents.set("alpha", mode="ok")
    return ids


def test_dlq_lists_pending_oldest_first_with_cursor(
    client: httpx.Client, agents: RunningAgents
) -> None:
    log_ids = park(client, agents, 5)
    first = client.get("/dlq", params={"limit": 2}).json()
    assert [e["log_id"] for e in first["items"]] == log_ids[:2]
    second = client.get("/dlq", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = client.get("/dlq", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [e["log_id"] for e in second["items"] + third["items"]] == log_ids[2:]
    assert third["next_cursor"] is None
    entry = first["items"][0]
    assert set(entry) >= {
        "id",
        "log_id",
        "agent",
        "kind",
        "payload",
        "error",
        "attempts",
        "replay_count",
        "status",
        "created_at",
        "last_attempt_at",
    }
    assert entry["error"]
    assert client.get("/dlq", params={"kind": "nope"}).json()["items"] == []
    assert client.get("/dlq", params={"limit": 0}).status_code == 422
    assert client.get("/dlq", params={"status": "weird"}).status_code == 422


def test_replay_success_marks_entry_and_updates_the_log(
    client: httpx.Client, agents: RunningAgents
) -> None:
    [log_id] = park(client, agents, 1)
    # Counted off the request, soon after it (service/backlog.py).
    wait_for(lambda: metric(client, "dlq_backlog") == 1, what="the backlog counted at 1")
    summary = client.post("/dlq/replay", json={"limit": 10}).json()
    assert summary == {
        "replayed": 1,
        "succeeded": 1,
        "failed": 0,
        "exhausted": 0,
        "deferred": 0,
        "deferred_reasons": [],
    }
    assert metric(client, "dlq_backlog") == 0
    assert client.get("/dlq").json()["items"] == []
    [entry] = client.get("/dlq", params={"status": "replayed"}).json()["items"]
    assert entry["replay_count"] == 1
    log = client.get(f"/logs/{log_id}").json()
    assert log["status"] == "delivered"
    assert log["response"]["agent"] == "alpha"
    # Replay re-sent the original log_id as the idempotency key.
    replayed = agents.received("alpha")[-1]
    assert replayed["headers"]["idempotency-key"] == log_id
    assert replayed["body"]["log_id"] == log_id


def test_replay_of_aggregate_goes_only_to_the_failed_agent(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("gamma", mode="fail", status=503)
    body = client.post("/route", json={"sender_id": "dlq", "payload": {"route": "fanout"}}).json()
    assert body["status"] == "partial"
    agents.set("gamma", mode="ok")
    alpha_before = len(agents.received("alpha"))
    summary = client.post("/dlq/replay", json={"limit": 10}).json()
    assert summary["succeeded"] == 1
    assert len(agents.received("alpha")) == alpha_before
    log = client.get(f"/logs/{body['log_id']}").json()
    assert log["status"] == "delivered"
    assert log["response"]["gamma"]["agent"] == "gamma"
    assert log["response"]["alpha"]["agent"] == "alpha"


def test_replay_failure_counts_up_then_exhausts(
    client: httpx.Client, agents: RunningAgents, router: RouterServer
) -> None:
    [log_id] = park(client, agents, 1)
    agents.set("alpha", mode="fail", status=400)
    max_replays = router.settings.max_replays
    for round_ in range(1, max_replays + 1):
        summary = client.post("/dlq/replay", json={"limit": 10}).json()
        exhausted = 1 if round_ == max_replays else 0
        assert summary == {
            "replayed": 1,
            "succeeded": 0,
            "failed": 1,
            "exhausted": exhausted,
            "deferred": 0,
            "deferred_reasons": [],
        }
    assert client.post("/dlq/replay", json={"limit": 10}).json()["replayed"] == 0
    [entry] = client.get("/dlq", params={"status": "exhausted"}).json()["items"]
    assert entry["log_id"] == log_id
    assert entry["replay_count"] == max_replays
    assert client.get(f"/logs/{log_id}").json()["status"] == "dead_lettered"


def test_replay_by_ids_touches_only_those(client: httpx.Client, agents: RunningAgents) -> None:
    park(client, agents, 3)
    entries = client.get("/dlq").json()["items"]
    chosen = [entries[1]["id"]]
    summary = client.post("/dlq/replay", json={"ids": chosen}).json()
    assert summary["replayed"] == 1
    pending = [e["id"] for e in client.get("/dlq").json()["items"]]
    assert pending == [entries[0]["id"], entries[2]["id"]]


def test_replay_request_needs_exactly_one_of_limit_or_ids(client: httpx.Client) -> None:
    huge = [-309138523019772917731606638872231936]
    for body in (
        {},
        {"limit": 1, "ids": [1]},
        {"limit": 0},
        {"ids": []},
        {"what": 1},
        {"ids": huge},
    ):
        response = client.post("/dlq/replay", json=body)
        assert response.status_code == 422, body


def test_an_empty_ids_list_gets_a_message_saying_what_to_send(client: httpx.Client) -> None:
    response = client.post("/dlq/replay", json={"ids": []})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "ids: 'ids' is empty: list the dead-letter ids to replay (GET /dlq shows "
        "them), or give 'limit' instead",
    }


def test_replaying_one_kind_by_listing_it_then_naming_its_ids(
    client: httpx.Client, agents: RunningAgents
) -> None:
    """The README's recipe: GET /dlq?kind=... then POST /dlq/replay with those ids."""
    park(client, agents, 2, kind="one")
    park(client, agents, 1, kind="fanout")
    listed = client.get("/dlq", params={"kind": "fanout"}).json()["items"]
    ids = [entry["id"] for entry in listed]
    assert len(ids) == 1
    assert client.post("/dlq/replay", json={"ids": ids}).json()["succeeded"] == 1
    assert {e["kind"] for e in client.get("/dlq").json()["items"]} == {"one"}


def test_two_replayers_at_once_never_replay_the_same_entry(
    client: httpx.Client, agents: RunningAgents, router: RouterServer, database_url: str
) -> None:
    log_ids = park(client, agents, 30)
    agents.set("alpha", mode="slow", delay_ms=20)
    before = len(agents.received("alpha"))

    def replay(_: int) -> dict[str, int]:
        return httpx.post(
            f"{router.base_url}/dlq/replay",
            json={"limit": 30},
            headers={"X-API-Key": client.headers["X-API-Key"]},
            timeout=60,
        ).json()

    with ThreadPoolExecutor(max_workers=2) as pool:
        summaries = list(pool.map(replay, range(2)))
    assert sum(s["replayed"] for s in summaries) == 30
    replayed_ids = [r["body"]["log_id"] for r in agents.received("alpha")[before:]]
    assert sorted(replayed_ids) == sorted(log_ids)
    rows = query(database_url, "SELECT count(*) AS n FROM dead_letters WHERE replay_count = 1")
    assert rows == [{"n": 30}]


def test_concurrent_replays_never_take_more_than_their_limit(
    client: httpx.Client, agents: RunningAgents, router: RouterServer
) -> None:
    park(client, agents, 40)
    agents.set("alpha", mode="slow", delay_ms=10)

    def replay(_: int) -> dict[str, int]:
        return httpx.post(
            f"{router.base_url}/dlq/replay",
            json={"limit": 5},
            headers={"X-API-Key": client.headers["X-API-Key"]},
            timeout=60,
        ).json()

    with ThreadPoolExecutor(max_workers=4) as pool:
        summaries = list(pool.map(replay, range(4)))
    assert [s["replayed"] for s in summaries] == [5, 5, 5, 5]
    assert len(client.get("/dlq", params={"limit": 500}).json()["items"]) == 20


def _park_directly(database_url: str, count: int) -> None:
    """Many dead letters at once, written as the router would (faster than routing them)."""
    sqlite = database_url.startswith("sqlite")
    now: object = "2026-01-01 00:00:00.000000" if sqlite else datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(count):
        log_id = f"bulk-{index}"
        query(
            database_url,
            "INSERT INTO idempotency_keys (log_id, created_at) VALUES ($1, $2)",
            log_id,
            now,
        )
        query(
            database_url,
            "INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts,"
            " trace_id, kind, rule, mode, routed_agents, status, created_at, updated_at)"
            " VALUES ($1, 'bulk', 'h', '{\"route\": \"one\"}', '{}', $2, $3, 'one', 'route-one',"
            " 'first_success', '[\"alpha\"]', 'dead_lettered', $4, $5)",
            log_id,
            now,
            "0" * 32,
            now,
            now,
        )
        query(
            database_url,
            "INSERT INTO dead_letters (log_id, agent, kind, mode, error, attempts, replay_count,"
            " status, created_at) VALUES ($1, '', 'one', 'first_success', 'HTTP 400', 1, 0,"
            " 'pending', $2)",
            log_id,
            now,
        )


def test_one_replay_call_attempts_each_entry_once_across_batches(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    _park_directly(database_url, 130)  # more than one claim batch (100)
    agents.set("alpha", mode="fail", status=400)
    summary = client.post("/dlq/replay", json={"limit": 500}).json()
    assert summary["replayed"] == 130
    assert len(agents.received("alpha")) == 130
    counts = query(database_url, "SELECT DISTINCT replay_count FROM dead_letters")
    assert counts == [{"replay_count": 1}]
