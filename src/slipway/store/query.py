"""A user's own SQL query, run read-only against the store's database (``slipway batch --query``).

The text is the user's: that is the point of ``--query``. Writes are refused by the database
itself (a read-only transaction on PostgreSQL, ``PRAGMA query_only`` on SQLite), and a query
the database rejects becomes a :class:`BatchInputError` that quotes its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from slipway.exceptions import BatchInputError
from slipway.store.engine import Store


class ReadOnlyQuery:
    """The rows of one SELECT statement, its columns and its row count."""

    def __init__(self, store: Store, sql: str) -> None:
        self.store = store
        self.sql = sql

    def columns(self) -> list[str]:
        """Column names the query returns."""
        with self._connection() as conn:
            result = conn.exec_driver_sql(f"SELECT * FROM ({self.sql}) AS q LIMIT 0")  # noqa: S608
            return list(result.keys())

    def count(self) -> int:
        """Rows the query returns now."""
        with self._connection() as conn:
            sql = f"SELECT count(*) FROM ({self.sql}) AS q"  # noqa: S608
            return int(conn.exec_driver_sql(sql).scalar_one())

    def batches(self, size: int) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """``(column names, rows)`` of at most ``size`` rows each, from a server-side cursor."""
        with self._connection() as conn:
            result = conn.execution_options(
                stream_results=True, max_row_buffer=size
            ).exec_driver_sql(self.sql)
            names = list(result.keys())
            for rows in result.partitions(size):
                yield names, [tuple(r) for r in rows]

    def _connection(self) -> _ReadOnly:
        # Refuse writes at the database level: the query is the user's text.
        conn = self.store.engine.connect()
        if self.store.dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        else:
            conn.exec_driver_sql("PRAGMA query_only = ON")
        return _ReadOnly(conn, self.store.dialect)


class _ReadOnly:
    """Close the read-only connection when the block ends; turn query errors into ours."""

    def __init__(self, conn: sa.Connection, dialect: str) -> None:
        self.conn, self.dialect = conn, dialect

    def __enter__(self) -> sa.Connection:
        return self.conn

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.conn.rollback()
        if self.dialect == "sqlite":
            # Discard rather than pool it: query_only is a setting of the connection itself.
            self.conn.invalidate()
        self.conn.close()
        if isinstance(exc, sa.exc.DBAPIError):
            reason = str(exc.orig).strip().splitlines()[0]
            raise BatchInputError(
                f"--query failed: {reason}. It runs read-only against the configured database."
            ) from None
