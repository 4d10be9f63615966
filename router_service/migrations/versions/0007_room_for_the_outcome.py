"""Room in every page of the log for its rows' outcomes, even when nothing can be pruned yet.

Postgres updates a row in place (HOT) only when its new version fits on the same page. The
new version is a whole copy of the row with the outcome added, so a page needs room for as many
copies as it holds rows, unless the old versions can be pruned first; and under steady load they
cannot, because some transaction is always running that still sees them. ``fillfactor = 70``
was enough for the small bodies of the closed loop (99.8-99.9 % HOT), but with the load
generator's mix (payloads of 20 bytes to a few kilobytes, about 450 on average) only 62-90 % of
the outcomes were HOT in the soak's open loop, falling as the log grew: the others wrote a new
entry into every index and their row onto another page. At ``fillfactor = 40`` a page fills to
40 % with claimed rows and keeps the rest for their new versions: room for every one while the
outcome (the agents' results and response) adds up to about half the row's size; a value over
about 2 kB goes to TOAST and leaves a pointer. The price is room: the heap takes about 2.6 kB
a signal of that mix instead of 1.8 kB.

Existing pages keep their layout until rewritten. On a partitioned log, each partition takes
the setting (a partitioned table holds no pages of its own); give new partitions the same.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNALS_FILLFACTOR = 40
PREVIOUS_FILLFACTOR = 70

# The log itself, or each of its partitions when it is partitioned.
LOG_TABLES = """
SELECT c.oid::regclass::text FROM pg_class AS c
 WHERE c.oid = 'signals'::regclass AND c.relkind = 'r'
UNION ALL
SELECT p.relid::regclass::text FROM pg_partition_tree('signals') AS p
 WHERE p.isleaf AND p.level > 0
"""


def _set(fillfactor: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return  # SQLite has no fillfactor
    for (table,) in bind.exec_driver_sql(LOG_TABLES).fetchall():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def upgrade() -> None:
    _set(SIGNALS_FILLFACTOR)


def downgrade() -> None:
    _set(PREVIOUS_FILLFACTOR)
