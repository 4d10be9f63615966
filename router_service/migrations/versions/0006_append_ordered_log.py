"""The log and the leases are keyed in time order, so their indexes grow at one end.

``log_id`` is a SHA-256: an index that leads with it takes every insert on a random page, and
once such indexes outgrow Postgres's buffers each signal reads and dirties pages that are not
cached (the soak's throughput fell by a fifth over a million rows). Only ``idempotency_keys``
needs ``log_id`` first: it is what deduplication looks up. So:

- ``signals`` is keyed by ``(created_at, log_id)``; the key replaces ``ix_signals_created``,
  which held the same columns (a B-tree is read backwards as cheaply as forwards, so the
  newest-first listing keeps its index);
- ``ix_signals_sender_created`` and ``ix_signals_kind_created`` become ascending: a new row goes
  at the end of its sender's or kind's range, which Postgres splits to fill pages (a descending
  one takes inserts at the start of the range and leaves the pages it splits half empty);
- ``signal_leases`` is keyed by ``(created_at, log_id)`` too (the claim inserts a lease only for
  a key it has just taken, so uniqueness is kept by ``idempotency_keys``), and gets an index on
  ``expires_at`` so the sweeper no longer reads the whole table every few seconds.

Lookups by ``log_id`` alone read ``created_at`` from ``idempotency_keys`` first.

On Postgres each key and index is rebuilt while the table is locked: on a large log run it in a
quiet window. On SQLite the tables are recreated (Alembic's batch mode).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRES_NAMES = {"pk": "%(table_name)s_pkey"}
NEW_INDEXES = {
    "ix_signals_sender_created": ("signals", ["sender_id", "created_at", "log_id"]),
    "ix_signals_kind_created": ("signals", ["kind", "created_at"]),
    "ix_signal_leases_expires": ("signal_leases", ["expires_at"]),
}
OLD_INDEXES = {
    "ix_signals_created": ("signals", ["created_at DESC", "log_id DESC"]),
    "ix_signals_sender_created": ("signals", ["sender_id", "created_at DESC", "log_id DESC"]),
    "ix_signals_kind_created": ("signals", ["kind", "created_at DESC"]),
}


def _key(table: str, columns: list[str]) -> None:
    with op.batch_alter_table(table, naming_convention=POSTGRES_NAMES) as batch:
        batch.drop_constraint(f"{table}_pkey", type_="primary")
        batch.create_primary_key(f"{table}_pkey", columns)


def _create(indexes: dict[str, tuple[str, list[str]]]) -> None:
    for name, (table, parts) in indexes.items():
        op.create_index(name, table, [sa.literal_column(part) for part in parts])


def upgrade() -> None:
    # Dropped first, so SQLite's batch mode does not copy them into the recreated table.
    for name, (table, _) in OLD_INDEXES.items():
        op.drop_index(name, table)
    _key("signals", ["created_at", "log_id"])
    _key("signal_leases", ["created_at", "log_id"])
    _create(NEW_INDEXES)


def downgrade() -> None:
    for name, (table, _) in NEW_INDEXES.items():
        op.drop_index(name, table)
    _key("signal_leases", ["log_id"])
    _key("signals", ["log_id", "created_at"])
    _create(OLD_INDEXES)
