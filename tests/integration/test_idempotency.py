"""A repeated signal is never dispatched twice, across connections and processes."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.server import RouterServer


def recipe(sender_id: str, timestamp: str, payload: dict[str, object]) -> str:
    """The README's log_id recipe, written out independently of the code."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    payload_hash = hashlib.sha256(canonical.encode()).hexdigest()
    triple = json.dumps([sender_id, timestamp, payload_hash], separators=(",", ":"))
    return hashlib.sha256(triple.encode()).hexdigest()


def test_derived_log_id_follows_the_documented_recipe(client: httpx.Client) -> None:
    payload = {"route": "one", "b": [1, 2], "a": "é"}
    body = {"sender_id": "u", "payload": payload, "timestamp": "2026-01-01T01:00:00+01:00"}
    response = client.post("/route", json=body)
    assert response.json()["log_id"] == recipe("u", "2026-01-01T00:00:00.000000Z", payload)


def test_the_recipe_pads_a_year_below_1000_to_four_digits(client: httpx.Client) -> None:
    """Years 1 to 999 were hashed as strftime writes them on glibc (``1-01-01T…``)."""
    body = {"sender_id": "u", "payload": {}, "timestamp": "0001-01-01T00:00:00Z"}
    response = client.post("/route", json=body)
    assert response.json()["log_id"] == recipe("u", "0001-01-01T00:00:00.000000Z", {})
    assert client.get(f"/logs/{response.json()['log_id']}").status_code == 200


def test_repeat_gets_the_stored_answer_without_calling_agents(
    client: httpx.Client, agents: RunningAgents
) -> None:
    body = {"sender_id": "u", "payload": {"route": "one"}, "timestamp": "2026-02-01T00:00:00Z"}
    first = client.post("/route", json=body)
    second = client.post("/route", json=body)
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.json()["duplicate"] is True
    assert second.json()["log_id"] == first.json()["log_id"]
    assert second.json()["response"] == first.json()["response"]
    assert len(agents.received("alpha")) == 1


def test_repeat_of_a_dead_lettered_signal_is_202_and_not_redispatched(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=400)
    body = {"sender_id": "u", "payload": {"route": "one"}, "log_id": "dl-repeat"}
    assert client.post("/route", json=body).status_code == 202
    again = client.post("/route", json=body)
    assert again.status_code == 202
    assert again.json()["duplicate"] is True
    assert len(agents.received("alpha")) == 1


def test_signals_without_timestamp_never_collide(client: httpx.Client) -> None:
    body = {"sender_id": "u", "payload": {"route": "one"}}
    ids = {client.post("/route", json=body).json()["log_id"] for _ in range(3)}
    assert len(ids) == 3


def test_same_log_id_with_other_payload_is_422(client: httpx.Client) -> None:
    client.post("/route", json={"sender_id": "u", "payload": {"route": "one"}, "log_id": "k1"})
    other_payload = client.post(
        "/route", json={"sender_id": "u", "payload": {"route": "race"}, "log_id": "k1"}
    )
    other_sender = client.post(
        "/route", json={"sender_id": "v", "payload": {"route": "one"}, "log_id": "k1"}
    )
    for response in (other_payload, other_sender):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_concurrent_duplicates_dispatch_exactly_once(
    router: RouterServer, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=150)
    body = {"sender_id": "u", "payload": {"route": "one"}, "log_id": "burst-1"}

    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{router.base_url}/route", json=body, headers={"X-API-Key": API_KEY}, timeout=30
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(40)))
    assert len(agents.received("alpha")) == 1
    assert {r.status_code for r in responses} <= {200, 409}
    delivered = [r for r in responses if r.status_code == 200]
    assert sum(1 for r in delivered if not r.json()["duplicate"]) == 1
    assert all(r.json()["log_id"] == "burst-1" for r in delivered)


def _post(base_url: str, body: object) -> httpx.Response:
    return httpx.post(f"{base_url}/route", json=body, headers={"X-API-Key": API_KEY}, timeout=30)


def test_duplicate_in_flight_waits_for_the_original_outcome(
    router: RouterServer, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=300)
    body = {"sender_id": "u", "payload": {"route": "one"}, "log_id": "wait-1"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(_post, router.base_url, body)
        # Sent only once the agent holds the original, so the original owns the claim.
        agents.wait_received("alpha", 1)
        second = _post(router.base_url, body)
        assert first.result().status_code == 200
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["response"] == first.result().json()["response"]
    assert len(agents.received("alpha")) == 1


def test_duplicate_still_in_flight_at_its_deadline_is_409_on_another_replica(
    router: RouterServer, database_url: str, routing_file: Path, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=400)
    impatient = RouterServer(make_settings(database_url, routing_file, request_deadline_ms=200))
    impatient.start()
    try:
        body = {"sender_id": "u", "payload": {"route": "one"}, "log_id": "slow-1"}
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(_post, router.base_url, body)
            agents.wait_received("alpha", 1)
            second = _post(impatient.base_url, body)
            assert first.result().status_code == 200
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "in_progress"
        assert len(agents.received("alpha")) == 1
    finally:
        impatient.stop()
