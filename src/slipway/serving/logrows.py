"""Prediction-log rows as the database takes them, and the cheapest way to insert them.

:meth:`LogTable.rows` turns a request's :class:`~slipway.serving.log.Entry` into one tuple per
prediction, ``inputs`` and ``outputs`` already JSON text (orjson). It runs when the request
queues its entry, on the event loop: a microsecond or two a row, and it leaves the writer
thread nothing to do in Python but hand a ready batch to the driver, so it holds the GIL
briefly instead of stalling requests for a switch interval at a time.

:meth:`LogTable.insert` writes a batch with as few driver calls as possible: multi-row
``INSERT ... VALUES (...), (...)`` statements on SQLite (one call per few hundred rows, where
``executemany`` steps, and releases and retakes the GIL, once per row), ``COPY`` on PostgreSQL.
The values are those SQLAlchemy would bind (its own bind processor makes ``created_at``), so
what the monitoring reads back is the same either way; JSON is compact, and a non-finite float
(possible only in a binary V2 tensor) is stored as ``null``, which both databases accept.
"""

from __future__ import annotations

import itertools
from datetime import UTC
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from slipway.store.schema import UTCDateTime

if TYPE_CHECKING:
    from slipway.serving.log import Entry

# Every column of ``predictions``, in the order of the tuples below.
COLUMNS = (
    "prediction_id", "created_at", "model_name", "version", "variant", "experiment", "unit_id",
    "inputs", "outputs", "latency_ms", "shadow_version", "shadow_outputs",
)  # fmt: skip
Row = tuple[Any, ...]
# Rows per SQLite statement: 12 parameters each, well under SQLite's 32,766 variables.
_SQLITE_ROWS = 500
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def to_json(value: Any) -> str:
    """Compact JSON text of a log value (numpy scalars and arrays included)."""
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()


class LogTable:
    """The ``predictions`` table, as the prediction-log writer fills it."""

    def __init__(self) -> None:
        # The value SQLAlchemy binds for created_at: naive UTC, on both backends.
        self._created = UTCDateTime().process_bind_param
        self._copy = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN"
        # Constant text from COLUMNS; every value is a bound parameter.
        self._insert = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES "  # noqa: S608

    def rows(self, entry: Entry) -> list[Row]:
        """One tuple per prediction of ``entry``, in :data:`COLUMNS` order."""
        at = entry.created_at
        created = at.replace(tzinfo=None) if at.tzinfo is UTC else self._created(at, None)
        names, unit_ids, outputs = entry.names, entry.unit_ids, entry.outputs
        model, version, variant = entry.model, entry.version, entry.variant
        latency = entry.latency_ms
        features = entry.features
        out = []
        for i, pid in enumerate(entry.ids):
            r = entry.rows[i]
            inputs = (
                {n: r.get(n) for n in names}
                if isinstance(r, dict)
                else dict(zip(names, r, strict=True))
            )
            if features:
                inputs.update({k: v[i] for k, v in features.items()})
            out.append(
                (
                    pid,
                    created,
                    model,
                    version,
                    variant,
                    None,
                    None if unit_ids is None else unit_ids[i],
                    to_json(inputs),
                    to_json(outputs[i]),
                    latency,
                    None,
                    None,
                )
            )
        return out

    def insert(self, conn: Connection, rows: list[Row]) -> None:
        """Insert ``rows`` in the connection's transaction."""
        if conn.dialect.name == "postgresql":
            self._copy_rows(conn, rows)
            return
        for start in range(0, len(rows), _SQLITE_ROWS):
            part = rows[start : start + _SQLITE_ROWS]
            values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * len(part))
            params = tuple(itertools.chain.from_iterable(part))
            conn.exec_driver_sql(self._insert + values, params)

    def _copy_rows(self, conn: Connection, rows: list[Row]) -> None:
        raw: Any = conn.connection.driver_connection
        try:
            with raw.cursor() as cur, cur.copy(self._copy) as copy:
                for row in rows:
                    copy.write_row(row)
        except Exception as exc:
            # Raised by psycopg itself, so SQLAlchemy did not wrap it: say whether the
            # database was unreachable (retry the batch) or refused the data (go row by row).
            import psycopg

            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise sa_exc.OperationalError(self._copy, None, exc) from exc
            raise
