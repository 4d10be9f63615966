"""What each signal takes in a page of the log, written with the row.

A page of ``GET /logs`` (and of the dead letters, and the console's lists) takes no more than
4 MB of its rows' payloads, metadata, results and responses (``page_size.py``). On Postgres it
measured the JSON columns with ``pg_column_size``, their stored size, which is compressed: 255 kB
of repeated text in ``metadata`` counted as 3 kB, and one request built a 128 MB page (1.9 s of
the event loop; 1.1 GB of memory for four at once). ``page_bytes`` is the length of the row's
JSON texts as they were written: payload and metadata at the claim, results and response added
at the outcome (and counted again at a replay). Rows from before this revision have none, and
are measured as before.

SQLite stores JSON as text, whose length it measures exactly: the column stays empty there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("signals", sa.Column("page_bytes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("page_bytes")
