"""Pages of the log and the dead letters, a replay's selection, a claim of entries and a sweep of
expired leases are decoded, and the API's pages written, on the page thread
(``router_service/page_work.py``), not on the event loop: one ``GET /logs`` of dense payloads
(258 kB bodies of 43,000 one-item lists, legal on ``/route``) held the loop 250-370 ms, and
eight readers at once held ``/route`` for up to 1.6 s. On both backends; the thread a value is
decoded on is read by a spy on the decoder, nothing else is replaced."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from router_service.adapters.db import records
from router_service.api import replay_jobs, routes
from router_service.devtools.demo_agents import RunningAgents
from router_service.jsonwire import loads
from router_service.service.records import DeadLetterFilter, DeadLetterQuery, LogQuery, StoredJson
from tests.support.store import PARKED, PLAN, open_store, record_outcome, signal

SENDER = "page-thread"
PAGE_THREAD = "page-work"


@pytest.fixture
def decoded_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads the stored JSON values were decoded on (a payload's, and on
    Postgres the other JSON columns'), marked ``payload`` for a payload."""
    threads: list[str] = []
    decode = records.loads

    def spy(text: str | bytes) -> Any:
        what = " payload" if '"route"' in str(text) else ""
        threads.append(threading.current_thread().name + what)
        return decode(text)

    monkeypatch.setattr(records, "loads", spy)
    return threads


def test_the_stores_reads_of_many_rows_that_parse_them_do_it_on_the_page_thread(
    database_url: str, decoded_on: list[str]
) -> None:
    async def scenario() -> dict[str, tuple[int, set[str]]]:
        async with open_store(database_url) as store:
            for n in range(3):
                # A lease that runs out at once: the sweep below takes the one left in flight.
                await store.claim(signal(f"pt-{n}", SENDER), PLAN, "c" * 32, "pt-owner", 0.001)
            for n in range(2):
                await record_outcome(store, f"pt-{n}", PLAN, PARKED, 1.0)
            parked = (await store.list_dead_letters(DeadLetterQuery(log_id="pt-0"))).items
            parked += (await store.list_dead_letters(DeadLetterQuery(log_id="pt-1"))).items
            ids = tuple(entry.id for entry in parked)
            reads: dict[str, Callable[[], Awaitable[Any]]] = {
                "list_logs": lambda: store.list_logs(LogQuery(sender_id=SENDER)),
                "list_dead_letters": lambda: store.list_dead_letters(DeadLetterQuery(ids=ids)),
                "claim_dead_letters": lambda: store.claim_dead_letters(
                    limit=None, ids=ids, owner="pt-replayer", lease_s=60
                ),
                "reclaim_expired": lambda: store.reclaim_expired("pt-sweeper", 60, 100),
            }
            seen = {}
            for name, read in reads.items():
                decoded_on.clear()
                found = await read()
                rows = found.items if hasattr(found, "items") else found
                mine = [r for r in rows if r.log_id.startswith("pt-")]
                seen[name] = (len(mine), set(decoded_on))
            return seen

    seen = asyncio.run(scenario())
    for name, (rows, threads) in seen.items():
        assert rows >= 1, name
        assert threads, name
        assert all(t.startswith(PAGE_THREAD) for t in threads), (name, threads)


def test_the_apis_pages_and_a_dry_runs_sample_are_written_on_the_page_thread(
    client: httpx.Client, agents: RunningAgents, monkeypatch: pytest.MonkeyPatch
) -> None:
    written_on: list[str] = []
    page_response, dry_run_body = routes.page_response, replay_jobs.dry_run_body

    def page_spy(*args: Any) -> Any:
        written_on.append(threading.current_thread().name)
        return page_response(*args)

    def dry_run_spy(*args: Any) -> Any:
        written_on.append(threading.current_thread().name)
        return dry_run_body(*args)

    monkeypatch.setattr(routes, "page_response", page_spy)
    monkeypatch.setattr(replay_jobs, "dry_run_body", dry_run_spy)
    agents.set("alpha", mode="fail", status=400)
    routed = client.post("/route", json={"sender_id": SENDER, "payload": {"route": "one"}})
    assert routed.json()["status"] == "dead_lettered"
    assert len(client.get("/logs", params={"sender_id": SENDER}).json()["items"]) == 1
    assert len(client.get("/dlq").json()["items"]) == 1
    preview = client.post("/dlq/replay", json={"sender_id": SENDER, "dry_run": True})
    assert preview.json()["count"] == 1
    assert len(written_on) == 3
    assert all(t.startswith(PAGE_THREAD) for t in written_on), written_on


def test_pages_read_as_stored_parse_no_payload_and_hold_what_was_stored(
    database_url: str, decoded_on: list[str]
) -> None:
    """The API's pages, the console's lists and a replay's selection take the JSON values as
    stored (``StoredJson``) and write them out as they are: nothing to parse, no objects."""
    payload = {"route": "one", "id": "ps-0", "big": 2**70, "nested": [["a"], {"b": None}]}

    async def scenario() -> tuple[Any, Any, Any, Any]:
        async with open_store(database_url) as store:
            sent = signal("ps-0", "page-stored")
            sent = type(sent).create(
                sender_id="page-stored", payload=payload, timestamp=sent.timestamp, log_id="ps-0"
            )
            await store.claim(sent, PLAN, "c" * 32, "ps-owner", 60)
            await record_outcome(store, "ps-0", PLAN, PARKED, 1.0)
            stored = await store.get("ps-0")
            decoded_on.clear()
            logs = await store.list_logs(LogQuery(sender_id="page-stored", stored_json=True))
            letters = await store.list_dead_letters(
                DeadLetterQuery(log_id="ps-0", stored_json=True)
            )
            selected = await store.select_dead_letters(
                DeadLetterFilter(sender_id="page-stored"), after_id=0, limit=10
            )
            return stored, logs.items, letters.items, selected

    stored, logs, letters, selected = asyncio.run(scenario())
    assert not [t for t in decoded_on if t.endswith("payload")]  # no payload parsed
    [record], [letter], [chosen] = logs, letters, selected
    for value in (record.payload, record.metadata, record.results, letter.payload, chosen.payload):
        assert isinstance(value, StoredJson), value
    assert loads(record.payload.text) == payload == stored.payload
    assert loads(record.results.text) == stored.results
    assert loads(record.metadata.text) == stored.metadata
    assert loads(letter.payload.text) == payload
    assert loads(chosen.metadata.text) == stored.metadata
    assert record.routed_agents == stored.routed_agents  # parsed: the record's own field
