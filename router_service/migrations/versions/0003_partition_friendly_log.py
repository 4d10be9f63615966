"""Idempotency keys get a table of their own, so the signal log can be partitioned by time.

A partitioned Postgres table enforces uniqueness only on keys that include the partition key, so
``log_id`` alone cannot stay the primary key of a ``signals`` partitioned by ``created_at``. The
uniqueness of ``log_id`` moves to ``idempotency_keys`` (small, never partitioned), backfilled from
the log; dead letters reference the key instead of the log row; ``signals`` is keyed by
``(log_id, created_at)``.

On Postgres every step is an ALTER in one transaction; the new primary key index is built while
``signals`` is locked, so on a large log run it in a quiet window. On SQLite the two tables are
recreated (Alembic's batch mode). The downgrade needs an unpartitioned ``signals``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Postgres's own default names, which 0001 got there. On SQLite 0001's constraints are unnamed:
# batch mode names them by the same pattern when it reflects them, so one drop fits both.
SIGNALS_PK = "signals_pkey"
DEAD_LETTERS_FK = "dead_letters_log_id_fkey"
ORDERED_INDEXES = {
    "ix_signals_created": ["created_at DESC", "log_id DESC"],
    "ix_signals_sender_created": ["sender_id", "created_at DESC", "log_id DESC"],
    "ix_signals_kind_created": ["kind", "created_at DESC"],
}
POSTGRES_NAMES = {"pk": "%(table_name)s_pkey", "fk": "%(table_name)s_%(column_0_name)s_fkey"}


def _point_dead_letters_at(table: str) -> None:
    with op.batch_alter_table("dead_letters", naming_convention=POSTGRES_NAMES) as batch:
        batch.drop_constraint(DEAD_LETTERS_FK, type_="foreignkey")
        batch.create_foreign_key(DEAD_LETTERS_FK, table, ["log_id"], ["log_id"])


def _key_signals_by(columns: list[str]) -> None:
    with op.batch_alter_table("signals", naming_convention=POSTGRES_NAMES) as batch:
        batch.drop_constraint(SIGNALS_PK, type_="primary")
        batch.create_primary_key(SIGNALS_PK, columns)
    if op.get_bind().dialect.name == "sqlite":
        # Batch mode copied the indexes as SQLite reflects them, without DESC: restore 0001's.
        for name, parts in ORDERED_INDEXES.items():
            op.drop_index(name, "signals")
            op.create_index(name, "signals", [sa.literal_column(part) for part in parts])


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("log_id", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO idempotency_keys (log_id, created_at) SELECT log_id, created_at FROM signals"
    )
    # Dead letters first: their old foreign key rests on the primary key about to be replaced
    # (Postgres would refuse to drop it), and SQLite recreates ``signals`` by dropping it, which
    # a reference to it would refuse (foreign keys are on).
    _point_dead_letters_at("idempotency_keys")
    _key_signals_by(["log_id", "created_at"])


def downgrade() -> None:
    _key_signals_by(["log_id"])
    _point_dead_letters_at("signals")
    op.drop_table("idempotency_keys")
