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
from router_service.domain.errors import Overloaded, ValidationFailed
from router_service.service.ports import Store
from router_service.service.records import DeadLetterFilter, ReplayJobRecord
from router_service.service.replay_jobs import snapshot_token
from tests.conftest import API_KEY, make_settings
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
    with RouterServer(settings) as server:
        yield server


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


async def orphan_job(store: Store) -> ReplayJobRecord:
    """A job over the pending entries of kind ``one`` whose runner died: its lease runs out."""
    survey = await store.survey_dead_letters(DeadLetterFilter(kind="one"))
    return await store.create_replay_job(
        created_by="gone",
        flt=DeadLetterFilter(kind="one", upto_id=survey.snapshot_id),
        rate=None,
        max_entries=None,
        selected=survey.count,
        owner="a-replica-that-died",
        lease_s=0.2,
    )


def test_a_dead_runners_job_is_taken_over_from_its_cursor(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    park(client, agents, 4)

    async def orphan() -> int:
        async with open_store(database_url) as store:
            return (await orphan_job(store)).id

    job_id = asyncio.run(orphan())
    done = wait_for(
        lambda: (j := client.get(f"/dlq/replays/{job_id}").json())["state"] == "done" and j
    )
    assert done["counts"]["succeeded"] == 4
    assert pending(database_url) == 0


def test_a_taken_over_job_waits_for_the_entry_its_dead_runner_had_in_hand(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    """The dead runner had claimed its next entry (its claim outlives the job's lease): the
    replica taking over passed it, and the job ended done with it pending and uncounted."""
    park(client, agents, 3)

    async def orphan_holding_an_entry() -> int:
        async with open_store(database_url) as store:
            job = await orphan_job(store)
            first = (await store.select_dead_letters(job.filter, after_id=0, limit=1))[0]
            held = await store.claim_dead_letters(
                limit=None, ids=[first.id], owner="a-replica-that-died", lease_s=2.0
            )
            assert [entry.id for entry in held] == [first.id]
            return job.id

    job_id = asyncio.run(orphan_holding_an_entry())
    done = wait_for(
        lambda: (j := client.get(f"/dlq/replays/{job_id}").json())["state"] == "done" and j
    )
    assert done["selected"] == 3
    assert done["counts"]["replayed"] == done["counts"]["succeeded"] == 3, done
    assert pending(database_url) == 0


def test_a_stopping_process_ends_its_job_after_the_entry_in_hand_and_another_finishes_it(
    client: httpx.Client, agents: RunningAgents, database_url: str, routing_file: Path
) -> None:
    """A rolling restart: the entry in hand was cut short (it had reached its agent) and its
    claim outlived the job's released lease; the replica taking over passed it or, once the
    claim ran out, sent it again."""
    park(client, agents, 3)
    before = len(agents.received("alpha"))
    agents.set("alpha", mode="slow", delay_ms=800)
    settings = make_settings(
        database_url,
        routing_file,
        replay_job_poll_s=0.2,
        replay_job_lease_s=1.0,
        agent_timeout_ms=2000,  # the slow answer is a success
    )
    stopping = RouterServer(settings).start()
    try:
        with httpx.Client(base_url=stopping.base_url, headers={"X-API-Key": API_KEY}) as other:
            started = other.post("/dlq/replay", json={"kind": "one", "background": True})
            assert started.status_code == 202, started.text
            job_id = started.json()["job"]["id"]
        agents.wait_received("alpha", before + 1)  # its first entry is in flight
        # The entry in hand stays slow (an agent takes its behaviour as a request arrives); the
        # replica taking over times its agent out sooner, and would time out and send again.
        agents.set("alpha", mode="ok")
    finally:
        stopping.stop()  # as on SIGTERM
    stopped = client.get(f"/dlq/replays/{job_id}").json()
    assert stopped["counts"]["replayed"] == 1, stopped["counts"]  # the entry in hand finished
    done = wait_for(
        lambda: (j := client.get(f"/dlq/replays/{job_id}").json())["state"] == "done" and j
    )
    counts = done["counts"]
    assert counts["replayed"] == counts["succeeded"] == 3, (stopped["counts"], counts)
    sent = [item["body"]["log_id"] for item in agents.received("alpha")[before:]]
    assert len(sent) == len(set(sent)) == 3, sent  # each entry once
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


def start_paced_job(client: httpx.Client, agents: RunningAgents, sender: str) -> tuple[int, int]:
    """A job over 4 entries at 0.2 per second, once its first entry went out: its id, and what
    alpha had received before it started."""
    park(client, agents, 4, sender=sender)
    before = len(agents.received("alpha"))
    started = client.post("/dlq/replay", json={"sender_id": sender, "rate": 0.2})
    assert started.status_code == 202, started.text
    job_id = int(started.json()["job"]["id"])
    wait_for(lambda: client.get(f"/dlq/replays/{job_id}").json()["counts"]["replayed"] == 1)
    return job_id, before


def assert_stopped_after_one(
    client: httpx.Client, agents: RunningAgents, job_id: int, before: int
) -> None:
    # The next entry was 5 s away: the job ends during the wait, with nothing more sent.
    stopped = wait_for(
        lambda: (j := client.get(f"/dlq/replays/{job_id}").json())["state"] == "cancelled" and j
    )
    assert stopped["counts"]["replayed"] == 1
    assert len(agents.received("alpha")) == before + 1


def test_a_paced_job_cancelled_during_its_wait_sends_nothing_more(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    job_id, before = start_paced_job(client, agents, "paced")
    cancelled = client.post(f"/dlq/replays/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["cancel_requested"] is True
    assert_stopped_after_one(client, agents, job_id, before)
    assert pending(database_url) == 3


def test_a_paced_job_cancelled_through_another_process_stops_during_its_wait(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    """The cancel reaches the runner through the store alone, as from another replica."""
    job_id, before = start_paced_job(client, agents, "elsewhere")

    async def cancel() -> None:
        async with open_store(database_url) as store:
            job = await store.cancel_replay_job(job_id)
            assert job is not None
            assert job.cancel_requested

    asyncio.run(cancel())
    assert_stopped_after_one(client, agents, job_id, before)


def test_replays_by_ids_and_by_limit_are_in_the_delivery_history(
    client: httpx.Client, agents: RunningAgents
) -> None:
    first, second = park(client, agents, 2)
    entry_ids = {e["log_id"]: e["id"] for e in client.get("/dlq").json()["items"]}
    agents.set("alpha", mode="fail", status=400)
    failed = client.post("/dlq/replay", json={"ids": [entry_ids[first]]})
    assert failed.json()["failed"] == 1, failed.text
    agents.set("alpha", mode="ok")
    replayed = client.post("/dlq/replay", json={"limit": 10})
    assert replayed.json()["succeeded"] == 2, replayed.text

    def history(log_id: str) -> list[dict[str, Any]]:
        return list(client.get(f"/logs/{log_id}").json()["delivery_history"])

    once_failed, succeeded_at_once = history(first), history(second)
    assert [(h["attempt"], h.get("outcome")) for h in once_failed] == [
        ("original", None),
        ("replay", "pending"),
        ("replay", "succeeded"),
    ]
    assert [(h["attempt"], h.get("outcome")) for h in succeeded_at_once] == [
        ("original", None),
        ("replay", "succeeded"),
    ]
    replays = [*once_failed[1:], *succeeded_at_once[1:]]
    assert all(h["job_id"] is None and h["agent"] is None for h in replays)  # whole signals
    assert "400" in str(once_failed[1]["error"])
    # Outside a job a replay continues the signal's own trace (a job's gets one linked to it).
    for history_of in (once_failed, succeeded_at_once):
        assert {h["trace_id"] for h in history_of} == {history_of[0]["trace_id"]}


def test_a_snapshot_or_an_entry_id_past_64_bits_is_a_422(
    client: httpx.Client, database_url: str
) -> None:
    """Never a 500 (SQLite's driver overflowing) nor the database's own refusal."""
    forged = snapshot_token(DeadLetterFilter(kind="nomatch"), 2**63)
    for body in ({"kind": "nomatch", "snapshot": forged}, {"ids": [2**63], "dry_run": True}):
        answer = client.post("/dlq/replay", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "validation_error"
    message = client.post("/dlq/replay", json={"kind": "nomatch", "snapshot": forged}).json()
    assert "snapshot is not one this server issued" in message["error"]["message"]

    async def select_past_64_bits() -> None:
        async with open_store(database_url) as store:
            with pytest.raises(ValidationFailed):
                await store.select_dead_letters(DeadLetterFilter(ids=(2**63,)), after_id=0, limit=1)

    asyncio.run(select_past_64_bits())


@pytest.mark.parametrize(
    "body",
    [
        {"dry_run": True, "error_contains": "\u0000"},
        {"dry_run": "yes"},
        {"dry_run": True, "background": "true"},
        {"dry_run": True, "rate": "1"},
        {"dry_run": True, "rate": True},
    ],
    ids=[
        "nul-in-error-contains",
        "dry-run-string",
        "background-string",
        "rate-string",
        "rate-bool",
    ],
)
def test_a_replay_request_of_the_wrong_type_or_with_a_nul_is_a_422(
    client: httpx.Client, body: dict[str, Any]
) -> None:
    answer = client.post("/dlq/replay", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert client.get("/dlq/replays").json()["items"] == []


def test_a_rate_is_any_json_number_in_range(client: httpx.Client) -> None:
    for rate in (1, 2.5):
        answer = client.post("/dlq/replay", json={"kind": "nomatch", "rate": rate})
        assert answer.status_code == 202, answer.text
        assert answer.json()["job"]["rate"] == rate


def test_a_job_the_busy_pool_interrupts_is_taken_over_not_failed(
    router: RouterServer, client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    """Every connection busy (concurrent reads of the log) is a moment, not the job's fault: it
    was marked failed for good, to be resumed by hand."""
    park(client, agents, 4)
    store: Any = router.app.state.services.store
    select = store.select_dead_letters
    busy = [Overloaded("every database connection is busy; retry shortly")]

    async def busy_once(*args: Any, **kwargs: Any) -> Any:
        if busy:
            raise busy.pop()
        return await select(*args, **kwargs)

    store.select_dead_letters = busy_once
    try:
        started = client.post("/dlq/replay", json={"kind": "one", "rate": 50})
        assert started.status_code == 202, started.text
        job_id = started.json()["job"]["id"]
        final = wait_for(
            lambda: (
                (j := client.get(f"/dlq/replays/{job_id}").json())["state"] in ("done", "failed")
                and j
            )
        )
    finally:
        del store.select_dead_letters
    assert not busy  # the first batch's selection met the busy pool
    assert final["state"] == "done", final
    assert final["counts"]["succeeded"] == 4
    assert pending(database_url) == 0


def test_a_process_runs_at_most_its_jobs_and_refuses_one_more_with_a_429(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    """Every running job reads the store while it waits for its next entry, and its batches take
    scan slots: a client's loop of starts (a script that retries, say) took the pool from every
    other client. A process runs ``REPLAY_MAX_JOBS`` (4 by default) at once."""
    park(client, agents, 6, sender="cap")

    def start() -> httpx.Response:
        return client.post("/dlq/replay", json={"sender_id": "cap", "rate": 0.01})

    def state(job_id: int) -> str:
        return str(client.get(f"/dlq/replays/{job_id}").json()["state"])

    jobs = []
    for _ in range(4):  # each sends one entry, then waits 100 s for its next
        started = start()
        assert started.status_code == 202, started.text
        jobs.append(started.json()["job"]["id"])
    recorded = len(client.get("/dlq/replays", params={"limit": 500}).json()["items"])
    refused = start()
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_replay_jobs"
    assert refused.headers["retry-after"] == "10"
    assert len(client.get("/dlq/replays", params={"limit": 500}).json()["items"]) == recorded
    assert all(state(job_id) == "running" for job_id in jobs)
    dry_run = client.post("/dlq/replay", json={"sender_id": "cap", "dry_run": True})
    assert dry_run.status_code == 200  # a preview runs nothing

    assert client.post(f"/dlq/replays/{jobs[0]}/cancel").status_code == 200
    wait_for(lambda: state(jobs[0]) == "cancelled")
    fifth = wait_for(lambda: (answer := start()).status_code == 202 and answer)
    jobs.append(fifth.json()["job"]["id"])
    resumed = client.post(f"/dlq/replays/{jobs[0]}/resume")
    assert resumed.status_code == 429, resumed.text
    assert state(jobs[0]) == "cancelled"
    # What would not resume anyway says so first.
    assert client.post("/dlq/replays/999999/resume").status_code == 404
    assert client.post(f"/dlq/replays/{jobs[1]}/resume").status_code == 409  # running

    for job_id in jobs[1:]:
        assert client.post(f"/dlq/replays/{job_id}/cancel").status_code == 200
    wait_for(lambda: all(state(job_id) == "cancelled" for job_id in jobs))
    finished = client.post("/dlq/replay", json={"sender_id": "cap"})  # small: within the call
    assert finished.status_code == 200, finished.text
    assert finished.json()["job"]["state"] == "done"
    assert pending(database_url) == 0


def test_the_jobs_list_goes_on_with_a_cursor(client: httpx.Client) -> None:
    """Newest first, ``limit`` at a time: past 500 jobs the older ones could not be listed."""
    started = []
    for _ in range(5):
        answer = client.post("/dlq/replay", json={"kind": "nomatch", "rate": 1})
        assert answer.status_code == 202, answer.text
        started.append(answer.json()["job"]["id"])
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = client.get("/dlq/replays", params=params).json()
        assert len(page["items"]) <= 2
        seen += [job["id"] for job in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == sorted(started, reverse=True)
    for garbage in ("garbage!", "WzBd", "WyJ4Il0"):  # not base64 JSON; [0]; ["x"]
        refused = client.get("/dlq/replays", params={"cursor": garbage})
        assert refused.status_code == 422, (garbage, refused.text)
