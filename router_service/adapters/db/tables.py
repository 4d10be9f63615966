"""SQLAlchemy Core tables: the idempotency keys, the signal log and the dead-letter queue.

"Never dispatch twice" is the primary key of ``idempotency_keys`` plus an atomic claim that
inserts the key and the log row together. The key table is small and never partitioned, so the
log itself can be: ``signals`` is keyed by ``(created_at, log_id)``, a key that includes the time
it would be partitioned by (Postgres enforces uniqueness on a partitioned table only on keys
that include the partition key), and dead letters reference the key, not the log row.

Only ``idempotency_keys`` leads with ``log_id`` (a SHA-256, so its inserts land on random
pages): the log, its leases and their indexes lead with time or a bounded column, so they grow
at one end and their working set stays small as they grow (migration 0006). A lookup by
``log_id`` alone reads ``created_at`` from the key first. See docs/scaling.md.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.expression import ColumnElement, Join

metadata = MetaData()

# JSONB on Postgres (queryable, compact), plain JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("log_id", String(128), primary_key=True),
    # The signal's created_at: prune deletes a key together with its signal.
    Column("created_at", Timestamp, nullable=False),
)

signals = Table(
    "signals",
    metadata,
    Column("log_id", String(128), nullable=False),
    Column("sender_id", String(256), nullable=False),
    Column("payload_hash", String(64), nullable=False),
    # Canonical JSON text: exactly what was hashed, whatever characters it holds.
    Column("payload", Text, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("signal_ts", Timestamp, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("rule", String(128), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("routed_agents", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("results", Json, nullable=True),
    Column("response", Json, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # The routing file version (content hash) that routed it; NULL before revision 0005.
    Column("routing_version", String(16), nullable=True),
    # Postgres: the bytes of its JSON texts as written, for the pages' budget (revision 0008).
    Column("page_bytes", Integer, nullable=True),
    PrimaryKeyConstraint("created_at", "log_id", name="signals_pkey"),
    # Room in each page for every row's outcome version: with no indexed column changed, the
    # update is HOT (no new index entries), even when no old version can be pruned yet
    # (migration 0007). Postgres only.
    postgresql_with={"fillfactor": 40},
)
# Ascending: a new row goes at the end of its sender's or kind's range, where Postgres splits
# pages to fill them. The primary key serves the newest-first listing, read backwards.
Index("ix_signals_sender_created", signals.c.sender_id, signals.c.created_at, signals.c.log_id)
Index("ix_signals_kind_created", signals.c.kind, signals.c.created_at)

# One row per signal in flight: who holds it and until when. Kept apart from ``signals`` so that
# the outcome changes no indexed column of the log (see migration 0004). Keyed like the log: a
# lease is inserted only with a key just taken, so ``idempotency_keys`` keeps it unique.
signal_leases = Table(
    "signal_leases",
    metadata,
    Column("log_id", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("owner", String(64), nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("created_at", "log_id", name="signal_leases_pkey"),
)
Index("ix_signal_leases_expires", signal_leases.c.expires_at)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "log_id",
        String(128),
        ForeignKey("idempotency_keys.log_id", name="dead_letters_log_id_fkey"),
        nullable=False,
    ),
    # '' when the whole signal is parked (first_success, fallback): unique keys and NULL disagree.
    Column("agent", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("replay_count", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claim_expires_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("last_attempt_at", Timestamp, nullable=True),
    # NULL: due now. Set after a failed replay so the redelivery worker backs off.
    Column("next_attempt_at", Timestamp, nullable=True),
    UniqueConstraint("log_id", "agent", name="uq_dead_letters_log_agent"),
)
Index("ix_dead_letters_status_id", dead_letters.c.status, dead_letters.c.id)
Index("ix_dead_letters_status_due", dead_letters.c.status, dead_letters.c.next_attempt_at)

# A replay run in the background: the filter, the snapshot bound (entries with a larger id were
# created after the dry run and are left out), the pace, counts so far and a lease, so that
# another replica takes over the remainder of a job whose runner died (migration 0005).
replay_jobs = Table(
    "replay_jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_by", String(128), nullable=False),  # the API key's name, never the key
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    Column("state", String(16), nullable=False),  # running, done, cancelled, failed
    Column("filter", Text, nullable=False),  # JSON
    Column("snapshot_id", BigInteger, nullable=False),
    Column("rate", Float, nullable=True),
    Column("max_entries", Integer, nullable=True),
    Column("selected", Integer, nullable=False),
    Column("cursor_id", BigInteger, nullable=False),  # entries up to this id are handled
    Column("replayed", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("exhausted", Integer, nullable=False),
    Column("deferred", Integer, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Timestamp, nullable=True),
    Column("error", Text, nullable=True),
)
Index("ix_replay_jobs_state_lease", replay_jobs.c.state, replay_jobs.c.lease_expires_at)

# One row per replayed dead-letter entry: with the signal's own results, its delivery history.
replay_attempts = Table(
    "replay_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("log_id", String(128), nullable=False),
    Column("dead_letter_id", BigInteger, nullable=False),
    Column("job_id", BigInteger, nullable=True),
    Column("agent", String(128), nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
)
Index("ix_replay_attempts_log", replay_attempts.c.log_id, replay_attempts.c.id)
Index("ix_replay_attempts_job", replay_attempts.c.job_id, replay_attempts.c.id)


def signal_by_key(log_id: str) -> ColumnElement[bool]:
    """The log row of ``log_id``, found through its key: the log leads with ``created_at``."""
    created = select(idempotency_keys.c.created_at).where(idempotency_keys.c.log_id == log_id)
    return and_(signals.c.created_at == created.scalar_subquery(), signals.c.log_id == log_id)


def dead_letters_with_signals() -> Join:
    """Dead letters joined to their log rows, through their keys."""
    return dead_letters.join(
        idempotency_keys, idempotency_keys.c.log_id == dead_letters.c.log_id
    ).join(
        signals,
        and_(
            signals.c.created_at == idempotency_keys.c.created_at,
            signals.c.log_id == idempotency_keys.c.log_id,
        ),
    )
