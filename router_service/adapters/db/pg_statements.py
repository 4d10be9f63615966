"""Every statement the router runs on Postgres, named, in one place.

Plans must not depend on what a table held when a connection prepared the statement: asyncpg
keeps prepared statements for the life of a connection, and Postgres switches a prepared
statement to a generic plan after five executions and keeps it. A generic plan made while
``signals`` was empty (or never analyzed) is free to scan the whole table, and would stay that
way as the log grows. So every statement on the hot path looks its rows up by a full unique key
(``log_id`` for keys, ``(created_at, log_id)`` for the log and its leases): an equality on a
unique index is an index lookup in every plan, whatever the statistics say, and on a log
partitioned by ``created_at`` it touches one partition. ``tests/integration/test_plan_stability.py``
holds this. A lookup by ``log_id`` alone goes through the key, which holds ``created_at``
(``SIGNAL_BY_KEY``).
"""

from __future__ import annotations

from typing import Any

# The claim: take the key, and only if it was new write the lease and the log row. One
# statement, so one implicit transaction and one round trip. It commits without waiting for its
# WAL flush (``set_config(..., true)`` is ``SET LOCAL`` for this statement's transaction): no
# answer leaves before the outcome's commit, which is synchronous and flushes the WAL up to and
# including the claim. Visibility to other connections, which idempotency needs, is immediate.
CLAIM = """
WITH claimed AS (
    INSERT INTO idempotency_keys (log_id, created_at) VALUES ($1, $14)
    ON CONFLICT (log_id) DO NOTHING
    RETURNING log_id
), leased AS (
    INSERT INTO signal_leases (log_id, created_at, owner, expires_at)
    SELECT log_id, $14, $12, $13 FROM claimed
)
INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, trace_id,
                     kind, rule, mode, routed_agents, status, created_at, updated_at,
                     routing_version, page_bytes)
SELECT log_id, $2, $3, $4::text, $5::text::jsonb, $6, $7, $8, $9, $10, $11::jsonb, 'in_progress',
       $14, $14, $15, octet_length($4::text) + octet_length($5::text)
  FROM claimed
 WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
RETURNING log_id
"""

# Whether a claim's first try took the lease (its answer lost with its connection).
LEASE_TAKEN_AT = """
SELECT 1 FROM signal_leases WHERE log_id = $1 AND created_at = $2 AND owner = $3
"""

# The outcome of one signal, run once per row of a group commit (``executemany``: one
# transaction, one WAL flush for the batch). The first final outcome wins: a signal finished
# twice (taken over after a crash) keeps the first. None of the columns it sets is indexed, so
# the update is HOT; the lease goes with it.
RECORD = """
WITH released AS (DELETE FROM signal_leases WHERE created_at = $2 AND log_id = $1)
UPDATE signals
   SET status = $3, results = $4::text::jsonb, response = $5::text::jsonb, latency_ms = $6,
       updated_at = $7,
       page_bytes = page_bytes + octet_length($4::text) + coalesce(octet_length($5::text), 0)
 WHERE created_at = $2 AND log_id = $1 AND status = 'in_progress'
RETURNING log_id
"""

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (log_id, agent, kind, mode, error, attempts, replay_count, status,
                          created_at, last_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, 0, 'pending', $7, $7)
ON CONFLICT (log_id, agent) DO NOTHING
RETURNING id
"""

SIGNAL_COLUMNS = (
    "s.log_id, s.sender_id, s.payload_hash, s.payload, s.metadata, s.signal_ts, s.trace_id, "
    "s.kind, s.rule, s.mode, s.routed_agents, s.status, s.results, s.response, s.latency_ms, "
    "s.created_at, s.updated_at, s.routing_version"
)

# The log row of ``$1``: the log is keyed by time first, and the key holds the time. Equality on
# the whole primary key, so the plan is an index lookup whatever the statistics say (as a join,
# a plan made on an empty log scans it for ``log_id``).
SIGNAL_BY_KEY = (
    "s.created_at = (SELECT created_at FROM idempotency_keys WHERE log_id = $1) AND s.log_id = $1"
)
# The log row of a dead letter ``d``, through its key.
SIGNAL_OF_DEAD_LETTER = (
    "JOIN idempotency_keys AS k ON k.log_id = d.log_id "
    "JOIN signals AS s ON s.created_at = k.created_at AND s.log_id = k.log_id"
)
# The same signal, looked up for each dead letter a page or a selection walks, in ``d.id`` order
# (two primary-key lookups a row; ``OFFSET 0`` keeps the planner from turning it back into a
# join). As a join, its selectivity is estimated at one row, and the planner joined every pending
# entry, then sorted them for a page of 51: 1.2 s for ``GET /dlq`` with 234,000 pending, and each
# batch of a replay job as long, again for every batch.
SIGNAL_OF_EACH_DEAD_LETTER = (
    "CROSS JOIN LATERAL (SELECT s.payload, s.sender_id, s.metadata, s.signal_ts, s.trace_id,"
    " s.routed_agents, s.status, s.page_bytes FROM idempotency_keys AS k"
    " JOIN signals AS s ON s.created_at = k.created_at AND s.log_id = k.log_id"
    " WHERE k.log_id = d.log_id OFFSET 0) AS s"
)

GET = f"SELECT {SIGNAL_COLUMNS} FROM signals AS s WHERE {SIGNAL_BY_KEY}"  # noqa: S608

# ``list_logs`` adds its filters (``postgres.log_filters``) between these two.
LIST_LOGS_HEAD = f"SELECT {SIGNAL_COLUMNS} FROM signals AS s WHERE TRUE"  # noqa: S608
LIST_LOGS_TAIL = " ORDER BY s.created_at DESC, s.log_id DESC LIMIT {limit}"
# A page's rows' sizes first (``page_size.py``): the bytes of their JSON texts as written
# (``page_bytes``, migration 0008). A row from before it is measured as it was: the text's length
# without reading it, the JSON columns' stored size (compressed: an underestimate).
OLD_ROW_BYTES = (
    "octet_length(s.payload) + pg_column_size(s.metadata)"
    " + coalesce(pg_column_size(s.results), 0) + coalesce(pg_column_size(s.response), 0)"
)
LIST_LOGS_SIZES_HEAD = (
    f"SELECT s.created_at, s.log_id, coalesce(s.page_bytes, {OLD_ROW_BYTES})"  # noqa: S608
    " AS row_bytes FROM signals AS s WHERE TRUE"
)

DEAD_LETTER_COLUMNS = (
    "d.id, d.log_id, d.agent, d.kind, d.mode, d.error, d.attempts, d.replay_count, d.status, "
    "d.created_at, d.last_attempt_at, d.claimed_by, d.claim_expires_at, "
    "s.payload, s.sender_id, s.metadata, s.signal_ts, s.trace_id"
)
LIST_DEAD_LETTERS_HEAD = (
    f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters AS d {SIGNAL_OF_EACH_DEAD_LETTER} WHERE TRUE"  # noqa: S608
)
LIST_DEAD_LETTERS_TAIL = " ORDER BY d.id LIMIT {limit}"
LIST_DEAD_LETTERS_SIZES_HEAD = (
    "SELECT d.id, coalesce(s.page_bytes, octet_length(s.payload) + pg_column_size(s.metadata))"  # noqa: S608
    " + coalesce(octet_length(d.error), 0) AS row_bytes"
    f" FROM dead_letters AS d {SIGNAL_OF_EACH_DEAD_LETTER} WHERE TRUE"
)

# A replayer's claim: pending entries nobody else holds, picked once (a materialized CTE; an
# ``IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`` may be re-run and claim more than n), leased
# to ``$2`` until ``$3``, returned with what their signal needs to be sent again.
# ``claim_dead_letters`` adds its filters (``postgres.dead_letter_filters``) to the pick.
CLAIM_DEAD_LETTERS = """
WITH picked AS MATERIALIZED (
    SELECT id FROM dead_letters
     WHERE status = 'pending' AND (claim_expires_at IS NULL OR claim_expires_at < $1) {filters}
     ORDER BY id {limit}
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE dead_letters AS d SET claimed_by = $2, claim_expires_at = $3
      FROM picked WHERE d.id = picked.id
    RETURNING d.*
)
SELECT {columns} FROM claimed AS d {signal} ORDER BY d.id
"""

# A replay's end is written while the entry is pending and its claim is still the replayer's
# ($2, $3 as claimed): one whose claim ran out and was taken by another replayer (a process
# frozen past the lease) leaves the entry to that one. A success ($9) is written whoever holds
# the claim: the agent has the signal, and the holder's end is then left out in turn.
DEFER_REPLAY = """
UPDATE dead_letters SET next_attempt_at = $4, claimed_by = NULL, claim_expires_at = NULL
 WHERE id = $1 AND status = 'pending'
   AND claimed_by IS NOT DISTINCT FROM $2 AND claim_expires_at IS NOT DISTINCT FROM $3
"""

FINISH_REPLAY = """
UPDATE dead_letters
   SET status = $4, replay_count = $5, error = $6, last_attempt_at = $7, next_attempt_at = $8,
       claimed_by = NULL, claim_expires_at = NULL
 WHERE id = $1 AND status = 'pending'
   AND (claimed_by IS NOT DISTINCT FROM $2 AND claim_expires_at IS NOT DISTINCT FROM $3 OR $9)
"""

# A successful replay locks its signal before it marks its entry, and counts what is still
# outstanding after both, in a statement of its own: a statement's snapshot is taken when it
# starts, so a count taken with the lock, or before it was granted, missed an entry another
# replay of the same signal had just marked, and both left the signal partial for ever.
REPLAYED_SIGNAL = f"""
SELECT s.created_at, s.response, s.results FROM signals AS s WHERE {SIGNAL_BY_KEY} FOR UPDATE
"""  # noqa: S608

OUTSTANDING_LETTERS = """
SELECT count(*) FROM dead_letters WHERE log_id = $1 AND status <> 'replayed'
"""

UPDATE_REPLAYED_SIGNAL = """
UPDATE signals SET status = $3, response = $4::text::jsonb, results = $5::text::jsonb,
       updated_at = $6,
       page_bytes = octet_length(payload) + octet_length(metadata::text)
                    + coalesce(octet_length($4::text), 0) + coalesce(octet_length($5::text), 0)
 WHERE created_at = $2 AND log_id = $1
"""

# Signals whose owner died mid-flight: their leases expired. Taken over a few at a time, each
# lease picked once and skipped by other sweepers while held. The walk of the expiry index starts
# at ``$5`` (``pg_sweep.py``: below it lie the entries of deleted leases); ``-infinity`` walks it
# all. Every lease taken is returned, with its signal's status: the caller counts them all.
RECLAIM_EXPIRED = f"""
WITH picked AS MATERIALIZED (
    SELECT created_at, log_id FROM signal_leases WHERE expires_at < $1 AND expires_at >= $5
     ORDER BY expires_at LIMIT $2
       FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE signal_leases AS l SET owner = $3, expires_at = $4
      FROM picked WHERE l.created_at = picked.created_at AND l.log_id = picked.log_id
    RETURNING l.log_id, l.created_at
)
SELECT {SIGNAL_COLUMNS} FROM taken AS t
  JOIN signals AS s ON s.created_at = t.created_at AND s.log_id = t.log_id
"""  # noqa: S608

RELEASE_LEASES = "UPDATE signal_leases SET expires_at = $2 WHERE owner = $1"

# Retention: one batch of finished signals older than $1 with no pending dead letter.
# From a position in the key (the previous batch's last signal; the first batch starts from
# before every key): the signals a batch keeps are not read again by the next one.
PRUNE_PICK = """
SELECT s.log_id, s.created_at FROM signals AS s
 WHERE s.created_at < $1 AND (s.created_at, s.log_id) > ($3::timestamptz, $4::text)
   AND s.status <> 'in_progress'
   AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.log_id = s.log_id AND d.status = 'pending')
 ORDER BY s.created_at, s.log_id
 LIMIT $2
"""
PRUNE_DEAD_LETTERS = "DELETE FROM dead_letters WHERE log_id = ANY($1::text[])"
PRUNE_SIGNALS = (
    "DELETE FROM signals WHERE (created_at, log_id) IN "
    "(SELECT * FROM unnest($1::timestamptz[], $2::text[]))"
)
PRUNE_KEYS = "DELETE FROM idempotency_keys WHERE log_id = ANY($1::text[])"

DLQ_BACKLOG = "SELECT count(*) FROM dead_letters WHERE status = 'pending'"

PING = "SELECT 1"
SCHEMA_REVISION = "SELECT version_num FROM alembic_version"
# What keeps the churned tables small: leases are deleted at every outcome, every outcome leaves
# an old row version behind; only (auto)vacuum gives their space back.
MAINTENANCE_SETTINGS = "SELECT current_setting('autovacuum'), current_setting('track_counts')"

# --- replay jobs (``pg_replay_jobs.py``); none of these is on the hot path ----------------------

# A replay's selection: pending entries, with the filters of ``DEAD_LETTER_FILTERS`` appended.
# The survey counts the whole selection: by a join, which reads the signals only when a filter
# asks for them (``SIGNAL_FILTERS``); a batch walks it in id order (``SIGNAL_OF_EACH_DEAD_LETTER``).
PENDING = "WHERE d.status = 'pending'"
SURVEY_COUNTS = "SELECT NULLIF(d.agent, '') AS agent, d.kind, count(*) AS n FROM dead_letters AS d "
SURVEY_HEAD = f"{SURVEY_COUNTS}{SIGNAL_OF_DEAD_LETTER} {PENDING}"
SURVEY_HEAD_WITHOUT_SIGNALS = f"{SURVEY_COUNTS}{PENDING}"
SURVEY_TAIL = " GROUP BY 1, 2 ORDER BY 1, 2"
SELECT_HEAD = (
    f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters AS d {SIGNAL_OF_EACH_DEAD_LETTER} {PENDING}"  # noqa: S608
)
SELECT_TAIL = " ORDER BY d.id LIMIT {limit}"
DEAD_LETTER_FILTERS = {
    "ids": "d.id = ANY({0}::bigint[])",
    "sender_id": "s.sender_id = {0}",
    "kind": "d.kind = {0}",
    # A whole-signal entry (agent '') concerns every agent its signal was routed to.
    "agent": "(d.agent = {0} OR (d.agent = '' AND s.routed_agents ? {0}))",
    "status": "s.status = {0}",
    "since": "d.created_at >= {0}",
    "until": "d.created_at < {0}",
    "error_contains": "strpos(lower(d.error), lower({0})) > 0",
    "upto_id": "d.id <= {0}",
    "after_id": "d.id > {0}",
}
# The filters that read the signal (``s.``), not only the dead letter.
SIGNAL_FILTERS = frozenset(name for name, clause in DEAD_LETTER_FILTERS.items() if "s." in clause)
MAX_DEAD_LETTER_ID = "SELECT coalesce(max(id), 0) FROM dead_letters"

REPLAY_JOB_COLUMNS = (
    "id, created_by, created_at, updated_at, finished_at, state, filter, snapshot_id, rate, "
    "max_entries, selected, cursor_id, replayed, succeeded, failed, exhausted, deferred, "
    "cancel_requested, lease_owner, lease_expires_at, error"
)
INSERT_REPLAY_JOB = f"""
INSERT INTO replay_jobs (created_by, created_at, updated_at, state, filter, snapshot_id, rate,
                         max_entries, selected, cursor_id, replayed, succeeded, failed,
                         exhausted, deferred, cancel_requested, lease_owner, lease_expires_at)
VALUES ($1, $2, $2, 'running', $3, $4, $5, $6, $7, 0, 0, 0, 0, 0, 0, false, $8, $9)
RETURNING {REPLAY_JOB_COLUMNS}
"""  # noqa: S608
GET_REPLAY_JOB = f"SELECT {REPLAY_JOB_COLUMNS} FROM replay_jobs WHERE id = $1"  # noqa: S608
LIST_REPLAY_JOBS = (
    f"SELECT {REPLAY_JOB_COLUMNS} FROM replay_jobs WHERE id < $2 ORDER BY id DESC LIMIT $1"  # noqa: S608
)
# Progress of the job ``$1`` while ``$2`` holds it; answers whether a cancel was asked.
SAVE_REPLAY_JOB_PROGRESS = """
UPDATE replay_jobs
   SET cursor_id = $3, replayed = $4, succeeded = $5, failed = $6, exhausted = $7,
       deferred = $8, updated_at = $9, lease_expires_at = $10
 WHERE id = $1 AND lease_owner = $2 AND state = 'running'
RETURNING cancel_requested
"""
FINISH_REPLAY_JOB = """
UPDATE replay_jobs
   SET state = $3, error = $4, finished_at = $5, updated_at = $5,
       lease_owner = NULL, lease_expires_at = NULL
 WHERE id = $1 AND lease_owner = $2 AND state = 'running'
"""
# A job that no live runner holds is cancelled at once; a held one stops after its entry.
CANCEL_REPLAY_JOB = f"""
UPDATE replay_jobs
   SET cancel_requested = (state = 'running'), updated_at = $2,
       state = CASE WHEN state = 'running'
                     AND (lease_expires_at IS NULL OR lease_expires_at < $2)
                    THEN 'cancelled' ELSE state END,
       finished_at = CASE WHEN state = 'running'
                           AND (lease_expires_at IS NULL OR lease_expires_at < $2)
                          THEN $2 ELSE finished_at END
 WHERE id = $1
RETURNING {REPLAY_JOB_COLUMNS}
"""  # noqa: S608
RESUME_REPLAY_JOB = f"""
UPDATE replay_jobs
   SET state = 'running', cancel_requested = false, finished_at = NULL, error = NULL,
       lease_owner = $2, lease_expires_at = $3, updated_at = $4
 WHERE id = $1 AND state IN ('cancelled', 'failed')
RETURNING {REPLAY_JOB_COLUMNS}
"""  # noqa: S608
# A running job whose runner died: picked once, skipped by other replicas while held.
TAKE_OVER_REPLAY_JOB = f"""
WITH picked AS MATERIALIZED (
    SELECT id FROM replay_jobs
     WHERE state = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < $1)
     ORDER BY id LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE replay_jobs AS j SET lease_owner = $2, lease_expires_at = $3, updated_at = $1
  FROM picked WHERE j.id = picked.id
RETURNING {", ".join("j." + c for c in REPLAY_JOB_COLUMNS.split(", "))}
"""  # noqa: S608
RELEASE_REPLAY_JOBS = (
    "UPDATE replay_jobs SET lease_expires_at = $2 WHERE lease_owner = $1 AND state = 'running'"
)
INSERT_REPLAY_ATTEMPT = """
INSERT INTO replay_attempts (log_id, dead_letter_id, job_id, agent, trace_id, outcome, error,
                             created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
REPLAY_HISTORY = """
SELECT log_id, dead_letter_id, job_id, agent, trace_id, outcome, error, created_at
  FROM replay_attempts WHERE log_id = $1 ORDER BY id
"""


class Filters:
    """``AND`` clauses appended to a statement, their values as numbered parameters."""

    def __init__(self, first_param: int = 1) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []
        self._next = first_param

    def add(self, template: str, *values: Any) -> None:
        """``template`` names its parameters ``{0}``, ``{1}``…"""
        numbers = [f"${self._next + i}" for i in range(len(values))]
        self._next += len(values)
        self.clauses.append(" AND " + template.format(*numbers))
        self.params.extend(values)

    @property
    def text(self) -> str:
        return "".join(self.clauses)
