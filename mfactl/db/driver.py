"""The login path's statements on the driver's own connection.

A verification is two short statements, and SQLAlchemy's work around each (its execution
context, result objects, events, the pool's isolation-level switching) cost more than the
statement itself on a local server (about 145 µs a statement, measured in bench/verify.py's
setting). Here a Core statement is compiled once for the engine's dialect, and run on the
pooled connection's DBAPI connection with its parameters converted by the columns' own types:
the same SQL, the same pool and the same errors (as SQLAlchemy's exception classes, so callers
map them as they map any other), without that work.

Each statement is its own transaction: a read takes no lock and holds no snapshot; a write is
committed at once (autocommit: on PostgreSQL no BEGIN or COMMIT round trip; on SQLite the write
lock is held inside the one call that runs the UPDATE).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class DriverStatement:
    """A Core statement compiled once for a dialect, with what its parameters need."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        self._defaults = dict(compiled.params)  # the statement's own constants
        self._convert: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._convert[name] = process
        columns = getattr(statement, "selected_columns", None)
        self.row = namedtuple("Row", [c.key for c in columns]) if columns is not None else None

    def parameters(self, values: Mapping[str, Any]) -> Any:
        given = {**self._defaults, **values}
        converted = {
            name: self._convert[name](value) if name in self._convert else value
            for name, value in given.items()
        }
        if self._order is None:
            return converted
        return [converted[name] for name in self._order]


# keyed by the statement itself (held here), not its id(), which a later object may reuse
_COMPILED: dict[tuple[ClauseElement, str], DriverStatement] = {}


def compiled(statement: ClauseElement, dialect: Dialect) -> DriverStatement:
    """The statement compiled for ``dialect``, once per process: for statements built once."""
    key = (statement, dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = DriverStatement(statement, dialect)
    return found


class Borrowed:
    """A pooled connection's driver connection, lent for a few statements."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect
        self._pooled: Any = None
        self._wrote = False

    def _connect(self) -> Any:
        self._pooled = self._engine.raw_connection()
        driver = self._pooled.driver_connection
        # each statement commits by itself, handed back to the pool as it came (see close()):
        # on SQLite the write lock is then held within one call into SQLite, never across the
        # wait for Python's GIL between an UPDATE and its COMMIT
        if self._dialect.name == "postgresql":
            driver.autocommit = True
        elif self._dialect.name == "sqlite":
            driver.isolation_level = None
        return driver

    def _run(self, statement: ClauseElement, values: Mapping[str, Any]) -> Any:
        prepared = compiled(statement, self._dialect)
        parameters = prepared.parameters(values)
        if self._pooled is None:
            self._connect()
        cursor = self._pooled.driver_connection.cursor()
        try:
            cursor.execute(prepared.sql, parameters)
        except self._dialect.loaded_dbapi.Error as exc:
            cursor.close()
            disconnected = self._dialect.is_disconnect(exc, self._pooled, cursor)
            raise DBAPIError.instance(
                prepared.sql,
                parameters,
                exc,
                self._dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=disconnected,
                dialect=self._dialect,
            ) from exc
        return prepared, cursor

    def first(self, statement: ClauseElement, values: Mapping[str, Any]) -> Any:
        """The first row of a read, named by its columns, or None. A connection the server had
        closed (a restart, a failover) is met here, before anything is written: the read is
        done once more on a fresh one."""
        try:
            prepared, cursor = self._run(statement, values)
        except DBAPIError as exc:
            if not exc.connection_invalidated or self._wrote:
                raise
            # as SQLAlchemy's own Connection does: this connection and every other the pool
            # made before it are thrown away (a restart closed them all)
            self._engine.pool._invalidate(self._pooled, exc.orig)
            self._pooled = None
            prepared, cursor = self._run(statement, values)
        try:
            found = cursor.fetchone()
        finally:
            cursor.close()
        return None if found is None or prepared.row is None else prepared.row(*found)

    def write(self, statement: ClauseElement, values: Mapping[str, Any]) -> int:
        """Run a write and commit it; how many rows it changed."""
        self._wrote = True
        _, cursor = self._run(statement, values)
        try:
            changed = int(cursor.rowcount)
        finally:
            cursor.close()
        if self._dialect.name not in ("postgresql", "sqlite"):
            self._pooled.driver_connection.commit()
        return changed

    def close(self) -> None:
        if self._pooled is None:
            return
        driver = self._pooled.driver_connection
        if self._dialect.name == "postgresql" and not driver.closed:
            driver.autocommit = False
        elif self._dialect.name == "sqlite":
            driver.isolation_level = ""  # pysqlite's own default, which SQLAlchemy relies on
        self._pooled.close()  # back to the pool, which rolls back what is left open
        self._pooled = None


@contextmanager
def borrowed(engine: Engine) -> Iterator[Borrowed]:
    connection = Borrowed(engine)
    try:
        yield connection
    finally:
        connection.close()
