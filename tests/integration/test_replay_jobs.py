"""Guarded replays on both backends: selection by filter, dry run with a snapshot bound, paced
background jobs, cancel and resume, takeover of a dead runner's job, and the delivery history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from router_service.cli import main
from router_service.devtools.demo_agents import RunningAgents
from router_service.service.records import DeadLetterFilter
from tests.conftest import make_settings
from tests.support.db import query
from tests.support.polling import wait_for
from tests.support.server import RouterServer
from tests.support.store import open_store

READER = "reader-key"


@pytest.fixture(scope="module")
def router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    settings = make_settings(
        database_url,
        routing_file,
        replay_job_poll_s=0.2,
        replay_job_lease_s=1.0,
        api_keys=f"reader:{READER}:logs:read",
    )
    server = RouterServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


def park(
    client: httpx.Client, agents: RunningAgents, count: int, sender: str = "s", kind: str = "one"
) -> list[str]:
    """``count`` dead-lettered signals (alpha answers 400, never retried)."""
    agents.set("alpha", mode="fail", status=400)
    ids = []
    for index in range(count):
        body = {"sender_id": sender, "payload": {"route": kind, "i": index, "s": sender}}
        response = client.post("/route", json=body)
        assert response.json()["status"] == "dead_lettered"
        ids.append(response.json()["log_id"])
    agents.set("alpha", mode="ok")
    return ids


def pending(url: str) -> int:
    return int(
        query(url, "SELECT count(*) AS n FROM dead_letters WHERE status = 'pending'")[0]["n"]
    )


def test_a_dry_run_counts_samples_and_names_agents_and_sends_nothing(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    park(client, agents, 3, sender="a")
    park(client, agents, 2, sender="b")
    received = len(agents.received("alpha"))
    answer = client.post("/dlq/replay", json={"sender_id": "a", "dry_run": True})
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["count"] == 3
    assert [e["payload"]["s"] for e in preview["sample"]] == ["a", "a", "a"]
    assert preview["agents"] == {
        "alpha": {"entries": 3, "circuit": "closed", "circuit_open": False}
    }
    assert preview["snapshot"]
    assert len(agents.received("alpha")) == received
    assert pending(database_url) == 5


def test_filters_select_by_error_agent_kind_and_status(
    client: httpx.Client, agents: RunningAgents
) -> None:
    park(client, agents, 2, kind="one")
    client.post("/route", json={"sender_id": "d", "payload": {"route": "deadend"}})

    def count(**selection: Any) -> int:
        body = {"dry_run": True, **selection}
        return int(client.post("/dlq/replay", json=body).json()["count"])

    assert count() == 3
    assert count(error_contains="http 400") == 2
    assert count(agent="dead") == 1  # a whole-signal entry concerns its route's agents
    assert count(agent="alpha") == 2
    assert count(kind="deadend") == 1
    assert count(status="partial") == 0
    assert count(status="dead_lettered", since="2000-01-01T00:00:00Z") == 3
    assert count(until="2000-01-01T00:00:00Z") == 0
    bad = client.post("/dlq/replay", json={"dry_run": True, "since": "yesterday"})
    assert bad.status_code == 422


def test_a_real_run_of_a_dry_runs_snapshot_leaves_later_entries_out(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    park(client, agents, 3)
    snapshot = client.post("/dlq/replay", json={"kind": "one", "dry_run": True}).json()["snapshot"]
    park(client, agents, 2)  # created after the dry run
    run = client.post("/dlq/replay", json={"kind": "one", "snapshot": snapshot})
    assert run.status_code == 200, run.text
    job = run.json()["job"]
    assert job["state"] == "done"
    assert job["selected"] == 3
    assert job["counts"]["succeeded"] == 3
    assert pending(database_url) == 2
    other = client.post("/dlq/replay", json={"kind": "race", "snapshot": snapshot})
    assert other.status_code == 422
    assert "another selection" in other.json()["error"]["message"]


def test_a_paced_job_runs_in_the_background_cancels_and_resumes(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    log_ids = park(client, agents, 8)
    started = client.post("/dlq/replay", json={"kind": "one", "rate": 10})
    assert started.status_code == 202, started.text
    job_id = started.json()["job"]["id"]
    assert started.headers["location"] == f"/dlq/replays/{job_id}"

    def job() -> dict[str, Any]:
        return dict(client.get(f"/dlq/replays/{job_id}").json())

    wait_for(lambda: job()["counts"]["replayed"] >= 2)
    cancelled = client.post(f"/dlq/replays/{job_id}/cancel")
    assert cancelled.status_code == 200
    stopped = wait_for(lambda: (j := job())["state"] == "cancelled" and j)
    done_before = stopped["counts"]["replayed"]
    assert 2 <= done_before < 8
    assert pending(database_url) == 8 - done_before
    # The state turns cancelled when the runner stops, after the entry it had in hand.
    assert job()["counts"]["replayed"] == done_before
    assert client.post(f"/dlq/replays/{job_id}/resume").status_code == 202
    finished = wait_for(lambda: (j := job())["state"] == "done" and j)
    assert finished["counts"] == {
        "replayed": 8,
        "succeeded": 8,
        "failed": 0,
        "exhausted": 0,
        "deferred": 0,
    }
    assert pending(database_url) == 0
    listed = client.get("/dlq/replays").json()["items"]
    assert listed[0]["id"] == job_id
    assert listed[0]["created_by"] == "default"
    attempts = query(database_url, "SELECT DISTINCT job_id FROM replay_attempts")
    assert attempts == [{"job_id": job_id}]
    history = client.get(f"/logs/{log_ids[0]}").json()["delivery_history"]
    assert [h["attempt"] for h in history] == ["original", "replay"]
    assert history[1]["job_id"] == job_id
    assert history[1]["outcome"] == "succeeded"
    assert history[1]["trace_id"] != history[0]["trace_id"]
    assert client.post(f"/dlq/replays/{job_id}/cancel").status_code == 409


def test_a_dead_runners_job_is_taken_over_from_its_cursor(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    park(client, agents, 4)

    async def orphan() -> int:
        async with open_store(database_url) as store:
            survey = await store.survey_dead_letters(DeadLetterFilter(kind="one"))
            job = await store.create_replay_job(
                created_by="gone",
                flt=DeadLetterFilter(kind="one", upto_id=survey.snapshot_id),
                rate=None,
                max_entries=None,
                selected=survey.count,
                owner="a-replica-that-died",
                lease_s=0.2,
            )
            return job.id

    job_id = asyncio.run(orphan())
    done = wait_for(
        lambda: (j := client.get(f"/dlq/replays/{job_id}").json())["state"] == "done" and j
    )
    assert done["counts"]["succeeded"] == 4
    assert pending(database_url) == 0


def test_jobs_are_guarded_by_scope_and_state(router: RouterServer) -> None:
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": READER}) as reader:
        assert reader.get("/dlq/replays").status_code == 200
        assert reader.post("/dlq/replays/1/cancel").status_code == 403
        assert reader.post("/dlq/replay", json={"dry_run": True}).status_code == 403
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": "test-key"}) as admin:
        assert admin.get("/dlq/replays/999999").status_code == 404
        assert admin.post("/dlq/replays/999999/resume").status_code == 404
        assert admin.get("/dlq/replays/0").status_code == 404
        assert admin.post("/dlq/replay", json={"snapshot": "garbage"}).status_code == 422
        # A vanishing rate would make an infinite lease (found by the fuzzer).
        assert admin.post("/dlq/replay", json={"rate": 1e-300}).status_code == 422


def test_the_cli_dry_runs_then_replays_the_same_set(
    client: httpx.Client, agents: RunningAgents, database_url: str, routing_file: Path
) -> None:
    park(client, agents, 3, sender="cli")
    env = {"DATABASE_URL": database_url, "ROUTING_CONFIG": str(routing_file), "API_KEY": "k"}
    runner = CliRunner()
    preview = runner.invoke(main, ["replay-dlq", "--sender-id", "cli", "--dry-run"], env=env)
    assert preview.exit_code == 0, preview.output
    assert "would replay 3 entries (dry run: nothing sent)" in preview.output
    snapshot = preview.output.split("snapshot: ")[1].split()[0]
    park(client, agents, 1, sender="cli")  # after the dry run: left out
    run = runner.invoke(
        main, ["replay-dlq", "--sender-id", "cli", "--snapshot", snapshot, "--rate", "50"], env=env
    )
    assert run.exit_code == 0, run.output
    assert "done: replayed 3 of 3: 3 succeeded" in run.output
    assert pending(database_url) == 1
    job = client.get("/dlq/replays").json()["items"][0]
    assert job["created_by"].startswith("cli:")
