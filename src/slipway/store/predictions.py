"""The prediction log: the ``predictions``, ``validation_failures`` and ``feedback`` tables.

Writing. :meth:`LogTable.rows` turns a request's :class:`Entry` into one tuple per
prediction, ``inputs`` and ``outputs`` already JSON text (orjson). It runs when the request
queues its entry, on the event loop: a microsecond or two a row, and it leaves the writer
thread nothing to do in Python but hand a ready batch to the driver, so it holds the GIL
briefly instead of stalling requests for a switch interval at a time. :meth:`LogTable.write`
stores a batch with as few driver calls as possible: multi-row ``INSERT ... VALUES (...),
(...)`` statements on SQLite (one call per few hundred rows, where ``executemany`` steps, and
releases and retakes the GIL, once per row), ``COPY`` on PostgreSQL. The values are those
SQLAlchemy would bind (its own bind processor makes ``created_at``), so what the monitoring
reads back is the same either way; JSON is compact, and a non-finite float (possible only in a
binary V2 tensor) is stored as ``null``, which both databases accept.

Reading. :func:`read_log` streams a model's log in chunks with the JSON parsed in bulk (several
times faster than per-row decoding by the driver); :func:`read_feedback` and
:func:`read_refusals` return the labels and refused requests of a time range;
:func:`logged_ids` and :func:`add_feedback` are what the feedback route needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from slipway.store.engine import Store, upsert
from slipway.store.schema import UTCDateTime, feedback, predictions, validation_failures

# Every column of ``predictions``, in the order of the tuples below.
COLUMNS = (
    "prediction_id", "created_at", "model_name", "version", "variant", "experiment", "unit_id",
    "inputs", "outputs", "latency_ms", "shadow_version", "shadow_outputs",
)  # fmt: skip
Row = tuple[Any, ...]
# Rows per SQLite statement: 12 parameters each, well under SQLite's 32,766 variables.
_SQLITE_ROWS = 500
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_READ_CHUNK = 50_000
_IDS_PER_QUERY = 500  # ids per IN (...): well under every driver's parameter limit


@dataclass
class Entry:
    """The predictions of one request, as queued; expanded to one row each by the writer.

    ``rows[i]`` is the validated input of prediction ``ids[i]``: a ``{field: value}`` mapping
    or a sequence of values in contract order (``names``).
    """

    ids: list[str]
    created_at: datetime
    model: str
    version: int
    names: Sequence[str]
    rows: Sequence[Any]
    outputs: list[dict[str, Any]]
    latency_ms: float
    unit_ids: Sequence[str | None] | None = None
    variant: str | None = None  # the experiment arm that answered (Route.arm)
    experiment: str | None = None
    # Computed features (models with features): name -> one value per prediction, kept in
    # the log's inputs beside the raw fields.
    features: Mapping[str, Sequence[Any]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Failure:
    """A request refused for breaking the contract (422), kept for data-quality monitoring."""

    created_at: datetime
    model: str
    version: int
    rows: int
    problems: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return 1


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
        model, version, latency = entry.model, entry.version, entry.latency_ms
        variant, experiment = entry.variant, entry.experiment
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
                    experiment,
                    None if unit_ids is None else unit_ids[i],
                    to_json(inputs),
                    to_json(outputs[i]),
                    latency,
                    None,
                    None,
                )
            )
        return out

    def write(self, store: Store, rows: list[Row], failures: Sequence[Failure] = ()) -> None:
        """Store prediction ``rows`` and refused requests in one transaction."""
        with store.write() as conn:
            if rows:
                self._insert_rows(conn, rows)
            if failures:
                conn.execute(
                    validation_failures.insert(),
                    [
                        {
                            "created_at": f.created_at,
                            "model_name": f.model,
                            "version": f.version,
                            "rows": f.rows,
                            "problems": f.problems,
                        }
                        for f in failures
                    ],
                )

    def _insert_rows(self, conn: sa.Connection, rows: list[Row]) -> None:
        if conn.dialect.name == "postgresql":
            self._copy_rows(conn, rows)
            return
        for start in range(0, len(rows), _SQLITE_ROWS):
            part = rows[start : start + _SQLITE_ROWS]
            values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * len(part))
            params = tuple(itertools.chain.from_iterable(part))
            conn.exec_driver_sql(self._insert + values, params)

    def _copy_rows(self, conn: sa.Connection, rows: list[Row]) -> None:
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


# -- reading ----------------------------------------------------------------------------------


@dataclass
class LogChunk:
    """Consecutive logged predictions: ids, times as text (ISO 8601, UTC, no zone, parsed in
    bulk by the reader), versions, and ``inputs``/``outputs`` as parsed JSON."""

    ids: Sequence[str]
    times: Sequence[str]
    versions: Sequence[int]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def read_log(store: Store, model: str, start: datetime, end: datetime) -> Iterator[LogChunk]:
    """Every logged prediction of ``model`` in [start, end), oldest first, in chunks."""
    query = (
        sa.select(
            predictions.c.prediction_id,
            # Text, parsed in bulk: per-row datetime and JSON decoding is the slow part.
            sa.cast(sa.type_coerce(predictions.c.created_at, sa.DateTime), sa.String),
            predictions.c.version,
            sa.cast(predictions.c.inputs, sa.Text),
            sa.cast(predictions.c.outputs, sa.Text),
        )
        .where(
            predictions.c.model_name == model,
            predictions.c.created_at >= start,
            predictions.c.created_at < end,
        )
        .order_by(predictions.c.created_at)
    )
    with store.read() as conn:
        result = conn.execution_options(yield_per=_READ_CHUNK).execute(query)
        for chunk in result.partitions():
            pid, at, version, inputs, outputs = zip(*chunk, strict=True)
            yield LogChunk(
                pid,
                at,
                version,
                orjson.loads("[" + ",".join(inputs) + "]"),
                orjson.loads("[" + ",".join(outputs) + "]"),
            )


def read_feedback(
    store: Store, model: str, start: datetime, end: datetime
) -> list[tuple[str, Any, datetime]]:
    """``(prediction_id, label, received_at)`` for the predictions of ``model`` logged in
    [start, end)."""
    query = (
        sa.select(feedback.c.prediction_id, feedback.c.label, feedback.c.received_at)
        .join(predictions, predictions.c.prediction_id == feedback.c.prediction_id)
        .where(
            predictions.c.model_name == model,
            predictions.c.created_at >= start,
            predictions.c.created_at < end,
        )
    )
    with store.read() as conn:
        return [(r.prediction_id, r.label, r.received_at) for r in conn.execute(query)]


def read_refusals(
    store: Store, model: str, start: datetime, end: datetime
) -> list[tuple[datetime, int, list[dict[str, Any]]]]:
    """``(created_at, rows, problems)`` of each request of ``model`` refused in [start, end)."""
    failures = validation_failures
    query = sa.select(failures.c.created_at, failures.c.rows, failures.c.problems).where(
        failures.c.model_name == model,
        failures.c.created_at >= start,
        failures.c.created_at < end,
    )
    with store.read() as conn:
        return [(r.created_at, r.rows, r.problems) for r in conn.execute(query)]


def logged_ids(store: Store, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` that are in the log."""
    ids = list(ids)
    found: set[str] = set()
    with store.read() as conn:
        for i in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[i : i + _IDS_PER_QUERY]
            query = sa.select(predictions.c.prediction_id).where(
                predictions.c.prediction_id.in_(chunk)
            )
            found.update(conn.execute(query).scalars())
    return found


def add_feedback(store: Store, labels: Sequence[tuple[str, Any]], received_at: datetime) -> int:
    """Store each ``(prediction_id, label)`` unless that prediction has a label already; how
    many were stored."""
    if not labels:
        return 0
    rows = [{"prediction_id": p, "label": label, "received_at": received_at} for p, label in labels]
    with store.write() as conn:
        stmt = (
            upsert(conn, feedback)
            .on_conflict_do_nothing(index_elements=["prediction_id"])
            .returning(feedback.c.prediction_id)
        )
        return len(conn.execute(stmt, rows).all())
