"""The signal log and the dead-letter queue.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("log_id", sa.String(128), primary_key=True),
        sa.Column("sender_id", sa.String(256), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("signal_ts", Timestamp, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("routed_agents", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("results", Json, nullable=True),
        sa.Column("response", Json, nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    desc = sa.literal_column
    op.create_index("ix_signals_created", "signals", [desc("created_at DESC"), desc("log_id DESC")])
    op.create_index(
        "ix_signals_sender_created",
        "signals",
        ["sender_id", desc("created_at DESC"), desc("log_id DESC")],
    )
    op.create_index("ix_signals_kind_created", "signals", ["kind", desc("created_at DESC")])
    op.create_index("ix_signals_status_lease", "signals", ["status", "lease_expires_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("log_id", sa.String(128), sa.ForeignKey("signals.log_id"), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("replay_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claim_expires_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_attempt_at", Timestamp, nullable=True),
        sa.UniqueConstraint("log_id", "agent", name="uq_dead_letters_log_agent"),
    )
    op.create_index("ix_dead_letters_status_id", "dead_letters", ["status", "id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("signals")
