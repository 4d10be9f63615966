"""The results: a console table, ``docs/reliability.md`` and a JSON file for tests to read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from chaos.scenarios import Outcome
from chaos.stack import AGENT_TIMEOUT_MS, LEASE_S, REQUEST_DEADLINE_MS, SWEEP_INTERVAL_S

COLUMNS = (
    "scenario",
    "requests",
    "acknowledged",
    "lost",
    "duplicate dispatches",
    "redeliveries",
    "5xx",
    "recovery",
    "result",
)

EXPLAINED: Mapping[str, str] = {
    "kill-router": (
        "Two replicas share the database; aggregate signals fan out to three agents that answer "
        "after 800 ms. Once half of them reached the first agent, one replica is killed with "
        "SIGKILL (its whole process group) and started again on the same port. The client "
        "resends every unanswered signal with the same `log_id` (409 `in_progress` while the "
        "lease runs, then the stored answer). The signals the dead replica had claimed stay "
        "`in_progress` until their lease (2 x `REQUEST_DEADLINE_MS`) expires; a sweeper in a "
        "live replica then dispatches them again under the same `Idempotency-Key`: those second "
        "receipts are the *redeliveries*. Recovery: from the kill until every signal was "
        "answered and none is `in_progress`."
    ),
    "kill-backlog": (
        "Two replicas share the database; every signal (60, 150 in the full run) goes to one "
        "of them and fans out to three agents that answer after 1.2 s, most of an attempt's "
        "time. Once all of them reached the first agent, that replica is killed with SIGKILL "
        "and started again. The two live sweepers (the other replica and the restarted one) "
        "must finish the backlog within the documented bound, the dead owner's lease + "
        "`SWEEP_INTERVAL_S` + one deadline per `SWEEP_CONCURRENCY` signals per sweeper (plus the "
        "restart), and no signal may be dispatched again by two sweepers (more than two effects "
        "per key and agent). Recovery: from the kill until every signal was answered and none is "
        "`in_progress`."
    ),
    "postgres-stop": (
        "One replica under an open-loop load of 25 signals/s on a private Postgres cluster, "
        "which is stopped with `pg_ctl -m immediate` (no checkpoint, every connection cut) and "
        "started again once 75 requests were answered during the outage (125 and twice in the "
        "full run). "
        "Requests during the outage must get a fast 503 `database_unavailable`, never a 500; a "
        "signal claimed before the stop whose outcome could not be recorded is finished by the "
        "sweeper. The client retries what was not acknowledged. Recovery: from Postgres "
        "accepting connections again to the first acknowledged signal."
    ),
    "kill-connections": (
        "Two replicas under 30 signals/s; every few hundred milliseconds "
        "`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
        "'router-service'` (restricted to the scenario's database) kills every router "
        "connection, idle or busy. The pool must replace dead connections without a restart; a "
        "request whose connection died mid-statement may get 503, never 500. Recovery: the "
        "longest time from a kill to the next acknowledged signal."
    ),
    "agent-failures": (
        "One route per failure: an agent that always answers 503, one that answers 429 with "
        "`Retry-After: 1`, one that answers 400, one that never answers, one that drips its "
        "body a byte every 300 ms, one that resets the connection (TCP RST), and one on a "
        "closed port (connection refused); plus an aggregate route to a healthy agent and all "
        "seven. Each failing signal must be parked (202 with a dead letter), the aggregate one "
        "`partial` (200, one dead letter per failed agent), every answer within the deadline; "
        "then every signal is sent again (stored answers, no agent called). Then every agent "
        "but the refused one recovers and `POST /dlq/replay` runs twice, at once and after the "
        "circuit breaker's cool-down: each call may attempt a pending entry once (every "
        "attempt counts toward `MAX_REPLAYS`), and in the end only the refused agent's entries "
        "may stay pending."
    ),
    "duplicates": (
        "Rounds of 200 concurrent copies of one signal (same `log_id`, sender and payload), "
        "plus 20 copies with the same `log_id` and another payload, spread over two replicas "
        "(one of them with two worker processes) while the agent takes 400 ms. Exactly one copy "
        "may dispatch; the others get the stored answer (`Idempotent-Replayed: true`) or 409 "
        "`in_progress`; the forged ones 422 `idempotency_key_reused`."
    ),
    "replayers": (
        "Signals are parked by an agent answering 400, then four replayers start at once: three "
        "`router-service replay-dlq --limit N` processes and one `POST /dlq/replay`. Each claims "
        "one entry at a time; the agent holds their first replays 2 s, and the first CLI "
        "replayer seen holding a claim is killed with SIGKILL, then the agent answers in 80 ms. "
        "The survivors must finish their own entries, no entry may be replayed twice except the "
        "one the dead replayer was sending (a redelivery), and its claim must expire; a last "
        "`replay-dlq` then takes what is left. Recovery: from the kill until every entry is "
        "`replayed`."
    ),
    "dlq-worker": (
        "Automatic redelivery: signals are parked, the agent recovers, then two "
        "`router-service worker` processes and a replica with `DLQ_WORKER_ENABLED=true` drain "
        "the queue at `DLQ_WORKER_RATE=15` entries/s each. The agent holds the first replays "
        "2 s; the first of the three seen holding a claim is killed with SIGKILL while it does, "
        "and started again. Every entry must end "
        "`replayed`, none sent twice except one the dead worker was sending. Recovery: from the "
        "kill until the queue is empty."
    ),
    "sigterm-drain": (
        "Requests to an agent answering in 1 s are in flight when the replica gets SIGTERM "
        "(with one worker, and in the full run with two). Every in-flight request must be "
        "answered 200 and the process must exit 0 within `DRAIN_TIMEOUT_S`. The recovery "
        "column shows how long the drain took."
    ),
    "overload": (
        "Back-pressure: one replica with `MAX_IN_FLIGHT=16` gets 150 signals at once (400 in "
        "the full run) for an agent answering in 500 ms. What exceeds the limit must be refused "
        "at once with 503 `overloaded` and a `Retry-After` header, must not reach the agent, and "
        "goes through when the client retries. Recovery: from the burst until every signal was "
        "acknowledged."
    ),
    "noisy-sender": (
        "A fair share for every sender. One replica with `GLOBAL_CONCURRENCY=12` agent slots and "
        "`SENDER_MAX_IN_FLIGHT=6`, one agent answering in 300 ms. Five quiet senders send 2 "
        "signals/s each (one open-loop stream, their signals in turn), first alone for 15 s (4 s "
        "in the quick run), then for 20 s (5 s) beside a noisy sender that sends 200 signals/s, "
        "20 times their total, open loop, whatever it is answered (a retry storm). The quiet "
        "senders' p99 beside the noisy sender must stay within 1.5 times their p99 alone, and "
        "none of their signals may be refused; the noisy sender must be refused with 429 "
        "`sender_over_limit`. `senders_waiting` and `sender_refusals_total` are read from "
        "`/metrics` every 50 ms. A p99 over the bound is measured once more, both phases "
        "anew, and the second measurement decides: with 40-50 quiet signals a phase (quick "
        "run) the p99 is the slowest one or two, and one stall of the machine can put it over "
        "the bound; unfairness fails both."
    ),
    "flood": (
        "A control client sends one signal at a time, first alone (the baseline), then while "
        "another process floods the same replica with `Content-Length: 100 MB` bodies, "
        "endless chunked bodies and hundreds of connections that send their headers one byte "
        "every 200 ms. The control client must keep getting answers; its p50/p99 are reported "
        "against the baseline, with what the server did to each kind of hostile client."
    ),
}

GUARANTEE = (
    "**Delivery to agents is at-least-once across crashes, deduplicated by the "
    "`Idempotency-Key`; dispatch is exactly-once per `log_id` otherwise.** A signal is claimed "
    "(an atomic insert of its log row, with a lease) before any agent is called, so a client "
    "duplicate, on any replica, never dispatches again. When the process that claimed it dies "
    "(or cannot record the outcome within 1.5 deadlines of the signal's arrival: it writes a "
    "failed outcome again until then) the lease runs out and another replica dispatches it "
    "again: an agent may then receive the same signal twice, always with the same "
    "`Idempotency-Key: <log_id>`, and must treat the key as the unit of work. The first outcome "
    "written is the log's, and the one every client is answered: a process frozen past its "
    "lease answers its client the outcome of the replica that took over, not its own. A dead "
    "letter is replayed by one replayer at a time; a replayer killed mid-send, or frozen past "
    "its claim, may leave one entry sent twice, under the same key, and a frozen replayer's "
    "late failure does not undo the entry's state (a late success is kept: the agent has it)."
)


def five_xx(outcome: Outcome) -> str:
    verdict = outcome.verdict
    if verdict.five_xx == 0:
        return "0"
    if verdict.server_errors == 0:
        return f"{verdict.five_xx} (all expected 503)"
    return f"{verdict.five_xx} ({verdict.server_errors} not an expected 503)"


def row(outcome: Outcome) -> list[str]:
    verdict = outcome.verdict
    result = "pass" if outcome.passed else ("did not run" if outcome.error else "FAIL")
    return [
        outcome.name,
        str(verdict.requests),
        str(verdict.acknowledged),
        str(verdict.lost),
        str(verdict.duplicate_dispatches),
        str(verdict.redeliveries),
        five_xx(outcome),
        outcome.recovery,
        result,
    ]


def console(outcomes: Sequence[Outcome]) -> str:
    rows = [list(COLUMNS), *(row(o) for o in outcomes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for outcome in outcomes:
        for problem in _problems(outcome):
            lines.append(f"{outcome.name}: {problem}")
    return "\n".join(lines)


def _problems(outcome: Outcome) -> list[str]:
    found = [str(v) for v in outcome.verdict.violations]
    if outcome.error:
        found.insert(0, f"did not finish: {outcome.error}")
    return found


def _table(outcomes: Sequence[Outcome]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(o)) + " |" for o in outcomes]
    return lines


def markdown(outcomes: Sequence[Outcome], meta: Mapping[str, Any]) -> str:
    failed = [o for o in outcomes if not o.passed]
    lines = [
        "# Reliability",
        "",
        "What the router guarantees when processes, the database and agents fail, and the "
        "figures of the last run of the fault suite that checks it. This page is written by "
        "`make chaos` (`python -m chaos`); do not edit it by hand.",
        "",
        "## The guarantee",
        "",
        GUARANTEE,
        "",
        "## Last run",
        "",
        f"{meta['mode']} run on {meta['date']}, {meta['cpus']} CPUs, {meta['postgres']}, "
        f"{meta['duration_s']:.0f} s in all. "
        + ("Every invariant held." if not failed else f"{len(failed)} scenario(s) failed."),
        "",
        *_table(outcomes),
        "",
        "- **requests**: `/route` requests sent, retries included; **acknowledged**: answered "
        "200 or 202.",
        "- **lost**: acknowledged signals without a final log row, or parked without a dead "
        "letter (invariant a).",
        "- **duplicate dispatches**: an agent reached by a client duplicate, or receiving a "
        "signal's work twice with neither a fault nor a recorded retry (or replay recorded as "
        "failed) to explain it (invariant b); **redeliveries**: a signal's work received again "
        "under the same key, after a fault interrupted its dispatch or an attempt timed out "
        "after the agent took it (allowed, counted; the notes say how many were retries).",
        "- **5xx**: 503 `database_unavailable`/`overloaded` during a fault are expected; anything "
        "else is a violation (invariant c).",
        "- **recovery**: per scenario, below.",
        "",
    ]
    if failed:
        lines += ["## What failed", ""]
        for outcome in failed:
            lines.append(f"**{outcome.name}**")
            lines.append("")
            lines += [f"- {p}" for p in _problems(outcome)]
            lines.append("")
    lines += ["## Scenarios", ""]
    for outcome in outcomes:
        lines += [f"### {outcome.name}: {outcome.title}", "", EXPLAINED.get(outcome.name, ""), ""]
        if outcome.notes:
            lines += [f"- {n}" for n in outcome.notes]
            lines.append("")
    lines += _invariants_section(meta)
    return "\n".join(lines).rstrip() + "\n"


def _invariants_section(meta: Mapping[str, Any]) -> list[str]:
    return [
        "## How it checks",
        "",
        "Routers, demo agents, replayers and a private Postgres cluster (`initdb` into a "
        "temporary directory, deleted at the end; the shared server is never touched) run as "
        "real processes on loopback. Every client request has an explicit `log_id` and its own "
        "`traceparent`, which the router continues, so each agent receipt names the client "
        "request that caused it. At the end of a scenario chaos reads every agent's receipts "
        "and the `signals` and `dead_letters` tables, and checks (`tools/chaos/invariants.py`):",
        "",
        "- **(a)** every 200/202 answer has its log row in a final state, and a parked signal "
        "(202, `partial`) has a dead letter;",
        "- **(b)** per (`Idempotency-Key`, agent) at most one effect: no receipt from a second "
        "client request, no repeated effect unless a fault interrupted that signal or the "
        "router recorded a retry for that agent, or a replay of it as failed (each up to "
        "`RETRY_MAX_ATTEMPTS` attempts the agent may have taken before the router gave up: "
        "then it is a redelivery), and the key is "
        "always the body's `log_id`. A receipt is an effect when "
        "the agent was answering success in time; attempts at a failing agent are not;",
        "- **(c)** no 5xx from client input (a 503 `database_unavailable`/`overloaded` during a "
        "fault is expected), and no request left without an answer unless a fault took its "
        "router away;",
        "- **(d)** dead letters are unique per (`log_id`, agent);",
        "- **(e)** no signal is left `in_progress` once the leases have run out;",
        "",
        "plus each scenario's own checks (exit codes, answers within the deadline, dead letters "
        "all replayed in the end).",
        "",
        "Settings of every router: "
        f"`REQUEST_DEADLINE_MS={REQUEST_DEADLINE_MS}` (lease {LEASE_S:g} s), "
        f"`AGENT_TIMEOUT_MS={AGENT_TIMEOUT_MS}`, `SWEEP_INTERVAL_S={SWEEP_INTERVAL_S}`, "
        "`DRAIN_TIMEOUT_S=10`, `DB_CONNECT_TIMEOUT_S=1`, `HEADER_TIMEOUT_S=2`, "
        "`BODY_TIMEOUT_S=5`, `DLQ_WORKER_ENABLED=false`.",
        "",
        "Run it: `make chaos` (the whole suite, under 15 minutes), `python -m chaos --quick` "
        "(the subset `tests/acceptance/test_chaos_quick.py` runs), `python -m chaos --only "
        "NAME`; `--keep-logs` keeps every process's output. Features of the router found at "
        f"run time: {meta['features']}.",
        "",
    ]


def as_json(outcomes: Sequence[Outcome], meta: Mapping[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "meta": dict(meta),
            "passed": all(o.passed for o in outcomes),
            "scenarios": [
                {
                    "name": o.name,
                    "passed": o.passed,
                    "error": o.error,
                    "requests": o.verdict.requests,
                    "acknowledged": o.verdict.acknowledged,
                    "lost": o.verdict.lost,
                    "duplicate_dispatches": o.verdict.duplicate_dispatches,
                    "redeliveries": o.verdict.redeliveries,
                    "retries": o.verdict.retries,
                    "stuck": o.verdict.stuck,
                    "server_errors": o.verdict.server_errors,
                    "expected_503": o.verdict.expected_503,
                    "no_answer": o.verdict.no_answer,
                    "dlq_duplicates": o.verdict.dlq_duplicates,
                    "recovery": o.recovery,
                    "violations": [str(v) for v in o.verdict.violations],
                    "notes": o.notes,
                    "duration_s": round(o.duration_s, 1),
                }
                for o in outcomes
            ],
        },
        option=orjson.OPT_INDENT_2,
    )
