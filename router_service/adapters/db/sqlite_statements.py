"""The SQLite store's hot statements, built once: a signal's claim and its outcome only bind
their values, and run on the driver's cursor (``sqlite_prepared.py``: ``Prepared.execute(conn,
statement, values)``).

Building a statement with ``.values(...)`` on every call coerces each value into a bound
parameter and computes the statement's cache key from them, which cost more of the event loop's
CPU than running the statement. Built once, each is compiled once for each set of value names
it is given; the values keep the columns' types (JSON, the UTC timestamps).
"""

from __future__ import annotations

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.sqlite import insert

from router_service.adapters.db.tables import dead_letters, idempotency_keys, signal_leases, signals
from router_service.domain.outcome import Status

# The key is the claim: the row that wins returns its log_id, a duplicate returns nothing.
TAKE_KEY = (
    insert(idempotency_keys)
    .on_conflict_do_nothing(index_elements=["log_id"])
    .returning(idempotency_keys.c.log_id)
)
ADD_LEASE = signal_leases.insert()
ADD_SIGNAL = signals.insert()

# Keyed by ``key_created_at`` and ``key_log_id``: a bound name may not be a column's in a SET.
# A value compared with a column takes the column's type; a value SET is given it here.
END_LEASE = signal_leases.delete().where(
    signal_leases.c.created_at == bindparam("key_created_at"),
    signal_leases.c.log_id == bindparam("key_log_id"),
)
# The first final outcome wins (a reclaimed signal may be finished twice).
FINISH_SIGNAL = (
    update(signals)
    .where(
        signals.c.created_at == bindparam("key_created_at"),
        signals.c.log_id == bindparam("key_log_id"),
        signals.c.status == Status.IN_PROGRESS.value,
    )
    .values(
        status=bindparam("new_status"),
        results=bindparam("new_results", type_=signals.c.results.type),
        response=bindparam("new_response", type_=signals.c.response.type),
        latency_ms=bindparam("new_latency_ms"),
        updated_at=bindparam("new_updated_at", type_=signals.c.updated_at.type),
    )
)
PARK = (
    insert(dead_letters)
    .on_conflict_do_nothing(index_elements=["log_id", "agent"])
    .returning(dead_letters.c.id)
)
