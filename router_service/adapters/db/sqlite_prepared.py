"""The SQLite writer's hot statements, run on the driver's cursor.

The claim and the outcome are five statements a signal, and on the writer thread each went
through SQLAlchemy's execution path: a compiled-cache lookup, an execution context, the result
object, and the bound values' processing one parameter at a time. That path cost more of the
writer's CPU than SQLite running the statements, and the writer shares the event loop's core
and its GIL (docs/performance-analysis.md).

The statements stay the Core statements of ``sqlite_statements.py``. ``Prepared`` compiles each
with SQLAlchemy's own SQLite compiler, once for each set of value names it is given: the SQL
text, the order of its parameters, their types' bind processors (JSON, the timestamps' text
form) and the statement's own literal values. Each execution then binds its values in that
order and runs on the pysqlite connection of the caller's SQLAlchemy ``Connection``, inside the
transaction that connection has open: the rows written are the rows ``Connection.execute``
would write. Driver errors become SQLAlchemy's (``DBAPIError.instance``), as the store expects
them. The compiled forms belong to their ``Prepared``, one per writer (``sqlite_writer.py``),
so they are those of the one engine it runs on.

A statement with values computed in Python at execution (a column's ``default=`` left out of
the values) is not prepared: ``execute`` refuses it at its first compile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Bind = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Form:
    sql: str
    names: tuple[str, ...]  # the parameters in order
    binds: tuple[Bind, ...]  # each parameter's bind processor
    literals: Mapping[str, Any]  # the statement's own values (a status it compares with)


class Prepared:
    """Compiled forms of Core statements, run on the driver's cursor; see the module."""

    def __init__(self) -> None:
        # By the statement itself (held, so no other object takes its identity) and the names
        # of its values. A statement is hashed and compared by identity.
        self._forms: dict[tuple[ClauseElement, tuple[str, ...]], _Form] = {}

    def execute(
        self, conn: Connection, statement: ClauseElement, values: Mapping[str, Any]
    ) -> sqlite3.Cursor:
        """``statement`` with ``values`` on ``conn``'s driver connection, in its transaction;
        the cursor holds what the statement returns (``fetchall``) and its ``rowcount``."""
        key = (statement, tuple(values))
        form = self._forms.get(key) or self._compile(key, statement, conn.dialect, values)
        params = tuple(
            bind(v) if bind is not None else v
            for bind, v in zip(
                form.binds,
                (values[n] if n in values else form.literals[n] for n in form.names),
                strict=True,
            )
        )
        driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        try:
            return driver.execute(form.sql, params)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(form.sql, params, exc, sqlite3.Error) from exc

    def _compile(
        self,
        key: tuple[ClauseElement, tuple[str, ...]],
        statement: ClauseElement,
        dialect: Dialect,
        values: Mapping[str, Any],
    ) -> _Form:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(values)))
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError(f"values computed at execution are not prepared: {compiled}")
        names: Sequence[str] = compiled.positiontup or ()
        binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        every = compiled.construct_params(dict(values))
        literals = {name: every[name] for name in names if name not in values}
        form = _Form(compiled.string, tuple(names), binds, literals)
        self._forms[key] = form
        return form
