"""INSERTs compiled once per dialect and run straight on the database driver, for the webhook hot path."""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert


class DirectInsert:
    """An `INSERT ... RETURNING ...` taking a fixed set of parameters (its columns), compiled once per dialect.

    Every webhook stores two rows. Through SQLAlchemy's execution machinery each insert cost several times
    what the database spent on it (cache lookup, execution context, result set-up, events), so here SQLAlchemy
    compiles the statement and the columns' own bind processors convert the values (our UTC datetimes, JSON,
    bytes) exactly as it would, and the driver runs the SQL inside the caller's transaction.
    """

    def __init__(self, statement: Insert, columns: tuple[str, ...]):
        self._statement = statement
        self._columns = columns
        self._compiled: dict[str, tuple[str, bool, list[tuple[str, Callable[[Any], Any] | None]]]] = {}

    def _compiled_for(self, dialect: Dialect):
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._statement.compile(dialect=dialect, column_keys=list(self._columns))
            names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
            unknown = set(names) - set(self._columns)
            if unknown:
                raise ValueError(f"the statement takes parameters beyond its columns: {sorted(unknown)}")
            processors = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                          for name in names]
            found = self._compiled[dialect.name] = (compiled.string, compiled.positional, processors)
        return found

    def returning_one(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Run it in `conn`'s transaction; the returned column of the inserted row, or None if none was."""
        row = self.returning_row(conn, values)
        return None if row is None else row[0]

    def returning_row(self, conn: Connection, values: dict[str, Any]) -> tuple | None:
        """Run it in `conn`'s transaction (or on its own, on a connection in autocommit); the returned row."""
        sql, positional, processors = self._compiled_for(conn.dialect)
        if positional:
            params: Any = tuple(values[name] if process is None else process(values[name]) for name, process in processors)
        else:
            params = {name: values[name] if process is None else process(values[name]) for name, process in processors}
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            row = conn.connection.driver_connection.execute(sql, params).fetchone()
        except dbapi_error as exc:  # the same exceptions as through SQLAlchemy: IntegrityError and its kin
            raise DBAPIError.instance(sql, params, exc, dbapi_error, dialect=conn.dialect) from exc
        return None if row is None else tuple(row)
