"""Operations: the routing version of each signal, replay jobs and each replay's attempt.

- ``signals.routing_version``: the content hash of the routing file that routed the signal
  (NULL for signals routed before this revision). Not indexed, so the outcome stays HOT.
- ``replay_jobs``: one row per replay job: who started it, the filter, the snapshot bound, the
  pace, the counts so far, the state, and a lease so another replica can take over its remainder.
- ``replay_attempts``: one row per replayed dead-letter entry: the job (if any), the new trace
  id, the outcome. With the signal's own attempts it is the signal's delivery history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("routing_version", sa.String(16), nullable=True))
    op.create_table(
        "replay_jobs",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("filter", sa.Text, nullable=False),
        sa.Column("snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("rate", sa.Float, nullable=True),
        sa.Column("max_entries", sa.Integer, nullable=True),
        sa.Column("selected", sa.Integer, nullable=False),
        sa.Column("cursor_id", sa.BigInteger, nullable=False),
        sa.Column("replayed", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("exhausted", sa.Integer, nullable=False),
        sa.Column("deferred", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_replay_jobs_state_lease", "replay_jobs", ["state", "lease_expires_at"])
    op.create_table(
        "replay_attempts",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("log_id", sa.String(128), nullable=False),
        sa.Column("dead_letter_id", sa.BigInteger, nullable=False),
        sa.Column("job_id", sa.BigInteger, nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_replay_attempts_log", "replay_attempts", ["log_id", "id"])
    op.create_index("ix_replay_attempts_job", "replay_attempts", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("replay_attempts")
    op.drop_table("replay_jobs")
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("routing_version")
