"""Dead letters carry when the redelivery worker may try them next.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_dead_letters_status_due", "dead_letters", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_status_due", "dead_letters")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("next_attempt_at")
