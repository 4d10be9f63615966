"""Leases move to a table of their own, so the outcome's update of the log is HOT.

Postgres updates a row in place ("heap-only tuple", no new index entries) only when no indexed
column changes and the page has room. The outcome changed ``status`` and the lease columns, which
the lease index ``(status, lease_expires_at)`` covered, so every signal wrote a second entry into
every index of ``signals``. Now:

- ``signal_leases`` holds one row per signal in flight (owner, expiry), inserted by the claim and
  deleted by the outcome; it stays small, and autovacuum is told to keep it so;
- ``signals`` loses the lease columns and the lease index: none of the columns the outcome writes
  is indexed;
- ``signals`` gets ``fillfactor = 70``, so a page keeps room for the outcome's new row version
  (existing pages keep their layout until rewritten).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A table of a few hundred live rows and thousands of deletions a second: vacuum it after a
# fixed number of dead rows rather than a share of its (tiny) size, and without throttling.
LEASES_STORAGE = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, "
    "autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0, "
    "autovacuum_analyze_threshold = 2000"
)
SIGNALS_FILLFACTOR = 70


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "signal_leases",
        sa.Column("log_id", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO signal_leases (log_id, created_at, owner, expires_at) "
        "SELECT log_id, created_at, COALESCE(lease_owner, ''), "
        "COALESCE(lease_expires_at, created_at) FROM signals WHERE status = 'in_progress'"
    )
    op.drop_index("ix_signals_status_lease", "signals")
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("lease_owner")
        batch.drop_column("lease_expires_at")
    if _postgres():
        op.execute(f"ALTER TABLE signal_leases SET ({LEASES_STORAGE})")
        op.execute(f"ALTER TABLE signals SET (fillfactor = {SIGNALS_FILLFACTOR})")


def downgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE signals SET lease_owner = (SELECT owner FROM signal_leases l "
        "WHERE l.log_id = signals.log_id), lease_expires_at = (SELECT expires_at "
        "FROM signal_leases l WHERE l.log_id = signals.log_id) WHERE status = 'in_progress'"
    )
    op.create_index("ix_signals_status_lease", "signals", ["status", "lease_expires_at"])
    op.drop_table("signal_leases")
    if _postgres():
        op.execute("ALTER TABLE signals RESET (fillfactor)")
