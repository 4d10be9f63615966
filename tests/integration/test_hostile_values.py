"""Values at the edges of what the router can hold, on both backends: every one gets a JSON 422
naming it, never a 500 (Python's datetime overflowing) or a 503 (Postgres refusing a NUL in
text, reported as the database being unavailable)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from router_service.domain.errors import ValidationFailed
from tests.support.db import migrated_database
from tests.support.store import open_store

# Valid RFC 3339, and inside Python's years 1 to 9999 as written; in UTC, outside them.
PAST_THE_ENDS = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
SIGNAL = {"sender_id": "edge-sender", "payload": {"route": "one"}}


def refused(answer: httpx.Response, words: str) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert words in error["message"]


@pytest.mark.parametrize("moment", PAST_THE_ENDS)
def test_a_signal_timestamp_past_the_calendar_in_utc_is_refused(
    client: httpx.Client, moment: str
) -> None:
    refused(client.post("/route", json={**SIGNAL, "timestamp": moment}), "out of range")
    refused(client.post("/route/explain", json={**SIGNAL, "timestamp": moment}), "out of range")


@pytest.mark.parametrize("moment", PAST_THE_ENDS)
@pytest.mark.parametrize("bound", ["since", "until"])
def test_a_filter_bound_past_the_calendar_in_utc_is_refused(
    client: httpx.Client, moment: str, bound: str
) -> None:
    refused(client.get("/logs", params={bound: moment}), f"{bound} is out of range")
    refused(client.post("/dlq/replay", json={bound: moment}), "out of range")


def test_the_calendar_ends_themselves_are_served(client: httpx.Client) -> None:
    assert client.post("/route", json={**SIGNAL, "timestamp": "0001-01-01T00:00:00Z"}).is_success
    assert client.get("/logs", params={"since": "0001-01-01T00:00:00+00:00"}).status_code == 200
    assert client.get("/logs", params={"until": "9999-12-31T23:59:59Z"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/logs/a%00b", {}),
        ("/logs", {"sender_id": "a\x00"}),
        ("/logs", {"kind": "\x00"}),
        ("/dlq", {"agent": "\x00"}),
        ("/dlq", {"kind": "k\x00"}),
        ("/dlq/replays", {"cursor": "\x00"}),
    ],
)
def test_a_nul_in_the_url_is_refused_before_any_handler(
    client: httpx.Client, path: str, params: dict[str, str]
) -> None:
    refused(client.get(path, params=params), "NUL")


def test_a_nul_in_the_query_of_route_is_refused_too(client: httpx.Client) -> None:
    """``POST /route`` is served in front of the middleware that refuses it elsewhere."""
    signal = {"sender_id": "u", "payload": {"route": "one"}}
    refused(client.post("/route", params={"x": "\x00"}, json=signal), "NUL")
    assert client.post("/route", params={"x": "y"}, json=signal).status_code == 200


@pytest.mark.parametrize("field", ["sender_id", "kind", "agent"])
def test_a_nul_in_a_replay_selection_is_refused(client: httpx.Client, field: str) -> None:
    refused(client.post("/dlq/replay", json={field: "a\x00"}), field)


def test_the_router_serves_on_after_the_refusals(client: httpx.Client) -> None:
    for _ in range(3):
        refused(client.get("/logs", params={"sender_id": "\x00"}), "NUL")
    routed = client.post("/route", json={**SIGNAL, "payload": {"route": "one", "n": 2}})
    assert routed.is_success
    found = client.get(f"/logs/{routed.json()['log_id']}")
    assert found.status_code == 200


def test_postgres_refusing_a_value_is_the_request_s_fault_not_an_outage(
    tmp_path: Path,
) -> None:
    """The store's own net, under the edge's: a value Postgres cannot take is a
    ``ValidationFailed`` (422), and the pool serves the next statement."""

    async def scenario(url: str) -> tuple[Any, Any]:
        async with open_store(url) as store:
            with pytest.raises(ValidationFailed, match="SQLSTATE 22021"):
                await store.get("a\x00")
            return await store.get("absent"), await store.ping()

    with migrated_database("postgres", tmp_path) as url:
        absent, ping_ms = asyncio.run(scenario(url))
    assert absent is None
    assert ping_ms > 0
