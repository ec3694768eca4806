"""INSERTs compiled once per dialect and run straight on the database driver, for the hot paths."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

_Processors = list[tuple[str, Callable[[Any], Any] | None]]


class DirectInsert:
    """An `INSERT ...` taking a fixed set of parameters (its columns), compiled once per dialect.

    Every webhook stores two rows and every storefront request a few events. Through SQLAlchemy's execution
    machinery each insert cost several times what the database spent on it (cache lookup, execution context,
    result set-up, events), so here SQLAlchemy compiles the statement, the columns' own bind processors convert
    the values (our UTC datetimes, JSON, bytes) exactly as it would, and the driver runs the SQL inside the
    caller's transaction. Driver errors come out as SQLAlchemy's own (IntegrityError and its kin).
    """

    def __init__(self, statement: Insert, columns: tuple[str, ...]):
        self._statement = statement
        self._columns = columns
        self._compiled: dict[str, tuple[str, bool, _Processors]] = {}

    def _compiled_for(self, dialect: Dialect) -> tuple[str, bool, _Processors]:
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

    def parameters(self, dialect: Dialect, rows: Iterable[dict[str, Any]]) -> tuple[str, list]:
        """The SQL and each row's converted parameters, ready for the driver (convert before taking a lock)."""
        sql, positional, processors = self._compiled_for(dialect)
        converted_times: dict[tuple[int, dt.datetime], Any] = {}  # a batch shares its timestamps: convert each once
        converted = []
        for values in rows:
            row = []
            for name, process in processors:
                value = values[name]
                if process is not None and value is not None:
                    if isinstance(value, dt.datetime):
                        key = (id(process), value)
                        if key not in converted_times:
                            converted_times[key] = process(value)
                        value = converted_times[key]
                    else:
                        value = process(value)
                row.append(value)
            converted.append(tuple(row) if positional else dict(zip((name for name, _ in processors), row)))
        return sql, converted

    def run(self, dialect: Dialect, driver_connection: Any, values: dict[str, Any]) -> tuple | None:
        """Run it on a driver connection (`app.db.driver_transaction`), in its open transaction; the returned row."""
        sql, [params] = self.parameters(dialect, [values])
        with translated_errors(dialect, sql, params):
            row = driver_connection.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def execute_many(self, dialect: Dialect, driver_connection: Any, sql: str, params: list) -> int:
        """Insert rows converted by `parameters` on a driver connection, in its open transaction."""
        if not params:
            return 0
        cursor = driver_connection.cursor()
        try:
            with translated_errors(dialect, sql, params[0]):
                cursor.executemany(sql, params)
        finally:
            cursor.close()
        return len(params)


class translated_errors:
    """Driver exceptions re-raised as SQLAlchemy's (IntegrityError and its kin), as if SQLAlchemy had run the SQL."""

    def __init__(self, dialect: Dialect, sql: str, params: Any):
        self._dialect, self._sql, self._params = dialect, sql, params

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, _traceback) -> bool:
        dbapi_error = self._dialect.loaded_dbapi.Error
        if error is not None and isinstance(error, dbapi_error):
            raise DBAPIError.instance(self._sql, self._params, error, dbapi_error, dialect=self._dialect) from error
        return False
