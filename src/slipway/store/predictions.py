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

Reading. :func:`log_lines` streams a model's log as blocks of JSON lines that the database
itself writes (one object per prediction, with its label when asked), for a columnar parser
to read without a Python object per row: the monitor, ``slipway predictions export`` and the
Dask engine all read through it. :func:`read_log` streams the same rows as parsed dicts, for
the few rows ``slipway predictions list`` shows; :func:`read_feedback` and
:func:`read_refusals` return the labels and refused requests of a time range;
:func:`logged_ids`, :func:`logged_versions`, :func:`latest_for_units` and
:func:`add_feedback` are what the feedback route needs. Every reader returns rows in one order,
``created_at`` and then a tie-break the database keeps stable (insertion order on SQLite, the
prediction id on PostgreSQL), so two reads of the same range agree row for row.
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
    shadow: ShadowSlot | None = None  # a shadow version's answers, filled off the request
    # Computed features (models with features): name -> one value per prediction, kept in
    # the log's inputs beside the raw fields.
    features: Mapping[str, Sequence[Any]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


class ShadowSlot:
    """Where one request's shadow answers land: one output per row, or None if not scored.

    Serving's shadow scorer fills it; the log writes the entry's rows with the answers (see
    :meth:`LogTable.with_shadow`) once it is filled, or without them when it comes too late.
    """

    __slots__ = ("done", "late", "outputs", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self.outputs: list[dict[str, Any]] | None = None
        self.done = False
        self.late = False  # set by the log when it wrote the rows without waiting any longer

    def fill(self, outputs: list[dict[str, Any]] | None) -> bool:
        """Set the answers (None: the shadow work was dropped); False, and nothing set, when
        the rows were already written without them (``late``) or the slot was filled."""
        if self.late or self.done:
            return False
        self.outputs = outputs
        self.done = True
        return True


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
        shadow = None if entry.shadow is None else entry.shadow.version
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
                    shadow,
                    None,
                )
            )
        return out

    def with_shadow(self, rows: list[Row], outputs: list[Any]) -> list[Row]:
        """``rows`` with the shadow version's answers (one per row) as ``shadow_outputs``."""
        return [(*row[:-1], to_json(out)) for row, out in zip(rows, outputs, strict=True)]

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
        .order_by(predictions.c.created_at, _tiebreak(store))
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


def _tiebreak(store: Store) -> Any:
    """What orders rows logged at the same instant: the rowid, which the (model_name,
    created_at) index already holds in order, on SQLite; the primary key on PostgreSQL."""
    if store.dialect == "sqlite":
        return sa.literal_column("predictions.rowid")
    return predictions.c.prediction_id


# -- reading as JSON lines ----------------------------------------------------------------------

_LINES_PER_BLOCK = 50_000  # SQLite: rows per fetch, about 12 MB of text
_BLOCK_BYTES = 16 << 20  # PostgreSQL: COPY output gathered into blocks of about this size
# One JSON object per row, written by the database. Keys: t created_at, v version, i inputs,
# o outputs; with details id prediction_id, var variant, exp experiment, u unit_id, ms
# latency_ms; with labels l (the feedback label's JSON text, as a JSON string) and r
# received_at. Only constant SQL here: every value is a bound parameter.
_SQLITE_LINE = """'{"t":"' || p.created_at || '","v":' || p.version || ',"i":' || p.inputs
 || ',"o":' || p.outputs"""
_SQLITE_DETAILS = """ || ',"id":' || json_quote(p.prediction_id) || ',"var":'
 || json_quote(p.variant) || ',"exp":' || json_quote(p.experiment) || ',"u":'
 || json_quote(p.unit_id) || ',"ms":' || printf('%!.17g', p.latency_ms)"""
# SQLite keeps a JSON number label as a number (the column's affinity is NUMERIC); a real is
# printed with 17 digits so that it reads back as the same double.
_SQLITE_LABEL = """',"l":' || json_quote(CASE typeof(f.label) WHEN 'real'
 THEN printf('%!.17g', f.label) ELSE CAST(f.label AS TEXT) END) || ',"r":"' || f.received_at
 || '"'"""
_PG_TIME = "to_char({}, 'YYYY-MM-DD HH24:MI:SS.US')"
_PG_LINE = f"""'{{"t":"' || {_PG_TIME.format("p.created_at")} || '","v":' || p.version
 || ',"i":' || p.inputs::text || ',"o":' || p.outputs::text"""
_PG_DETAILS = """ || ',"id":' || to_json(p.prediction_id)::text || ',"var":'
 || coalesce(to_json(p.variant)::text, 'null') || ',"exp":'
 || coalesce(to_json(p.experiment)::text, 'null') || ',"u":'
 || coalesce(to_json(p.unit_id)::text, 'null') || ',"ms":' || p.latency_ms::text"""
_PG_LABEL = f"""',"l":' || to_json(f.label::text)::text || ',"r":"'
 || {_PG_TIME.format("f.received_at")} || '"'"""
_WHERE = " WHERE p.model_name = {0} AND p.created_at >= {0} AND p.created_at < {0}"


def log_lines(
    store: Store,
    model: str,
    start: datetime,
    end: datetime,
    *,
    labels: bool | None = None,
    details: bool = False,
    newest: int | None = None,
) -> Iterator[bytes]:
    """The predictions of ``model`` logged in [start, end), in the readers' order, as blocks of
    JSON lines (UTF-8, one object per prediction, each block ending with a newline).

    ``labels=True`` keeps only labeled predictions and adds each one's feedback; ``None``
    adds the feedback where there is one; ``False`` reads no feedback. ``details`` adds the
    id, variant, experiment, unit id and latency. ``newest=N`` reads only the newest N, newest
    first. Times are UTC without a zone.
    """
    if store.dialect == "postgresql":
        yield from _pg_lines(store, model, start, end, labels, details, newest)
    else:
        yield from _sqlite_lines(store, model, start, end, labels, details, newest)


def _order(tiebreak: str, newest: int | None) -> str:
    if newest is None:
        return f" ORDER BY p.created_at, {tiebreak}"
    return f" ORDER BY p.created_at DESC, {tiebreak} DESC LIMIT {int(newest)}"


def _join(labels: bool | None) -> str:
    if labels is False:
        return " FROM predictions AS p"
    kind = "JOIN" if labels else "LEFT JOIN"
    return f" FROM predictions AS p {kind} feedback AS f ON f.prediction_id = p.prediction_id"


def _sqlite_lines(
    store: Store,
    model: str,
    start: datetime,
    end: datetime,
    labels: bool | None,
    details: bool,
    newest: int | None,
) -> Iterator[bytes]:
    line = _SQLITE_LINE + (_SQLITE_DETAILS if details else "")
    if labels:
        line += " || " + _SQLITE_LABEL
    elif labels is None:
        line += f" || CASE WHEN f.prediction_id IS NULL THEN '' ELSE {_SQLITE_LABEL} END"
    sql = f"SELECT {line} || '}}'" + _join(labels) + _WHERE.format("?") + _order("p.rowid", newest)
    with store.read() as conn:
        bind = _time_binder(conn)
        raw: Any = conn.connection.dbapi_connection
        # The lines as SQLite holds them (UTF-8 bytes): no str decoded per row and encoded
        # back per block.
        text_factory, raw.text_factory = raw.text_factory, bytes
        cursor = raw.cursor()
        try:
            cursor.execute(sql, (model, bind(start), bind(end)))
            while rows := cursor.fetchmany(_LINES_PER_BLOCK):
                yield b"\n".join([r[0] for r in rows]) + b"\n"
        finally:
            cursor.close()
            raw.text_factory = text_factory


def _pg_lines(
    store: Store,
    model: str,
    start: datetime,
    end: datetime,
    labels: bool | None,
    details: bool,
    newest: int | None,
) -> Iterator[bytes]:
    line = _PG_LINE + (_PG_DETAILS if details else "")
    if labels:
        line += " || " + _PG_LABEL
    elif labels is None:
        line += f" || coalesce({_PG_LABEL}, '')"
    query = (
        f"SELECT {line} || '}}'"
        + _join(labels)
        + _WHERE.format("%s")
        + _order("p.prediction_id", newest)
    )
    # CSV with a delimiter and a quote character that JSON text never holds: the lines come
    # out exactly as the database wrote them, with no escaping to undo.
    copy = f"COPY ({query}) TO STDOUT (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
    with store.read() as conn:
        bind = _time_binder(conn)
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(copy, (model, bind(start), bind(end))) as out:
            pending = bytearray()
            for data in out:
                pending += data
                if len(pending) >= _BLOCK_BYTES:
                    cut = pending.rfind(b"\n") + 1
                    yield bytes(pending[:cut])
                    del pending[:cut]
            if pending:
                yield bytes(pending)


def _time_binder(conn: sa.Connection) -> Any:
    """How SQLAlchemy binds a UTC datetime to ``predictions.created_at`` on this dialect, so
    that a hand-written statement selects exactly the rows a Core statement would."""
    impl = UTCDateTime()
    process = sa.DateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)

    def bind(at: datetime) -> Any:
        naive = impl.process_bind_param(at, conn.dialect)
        return process(naive) if process else naive

    return bind


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


def logged_versions(store: Store, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """``prediction_id -> (model, version)`` for those of ``ids`` that are in the log."""
    ids = list(ids)
    found: dict[str, tuple[str, int]] = {}
    cols = predictions.c
    with store.read() as conn:
        for i in range(0, len(ids), _IDS_PER_QUERY):
            query = sa.select(cols.prediction_id, cols.model_name, cols.version).where(
                cols.prediction_id.in_(ids[i : i + _IDS_PER_QUERY])
            )
            found.update((r.prediction_id, (r.model_name, r.version)) for r in conn.execute(query))
    return found


def latest_for_units(store: Store, model: str, unit_ids: Iterable[str]) -> dict[str, str]:
    """``unit_id -> prediction_id`` of the latest logged prediction of ``model`` for each unit
    (the newest ``created_at``; the greater UUIDv7, so the later minted, among equals)."""
    units = list(dict.fromkeys(unit_ids))
    best: dict[str, tuple[datetime, str]] = {}
    cols = predictions.c
    with store.read() as conn:
        for i in range(0, len(units), _IDS_PER_QUERY):
            query = sa.select(cols.unit_id, cols.created_at, cols.prediction_id).where(
                cols.model_name == model, cols.unit_id.in_(units[i : i + _IDS_PER_QUERY])
            )
            for r in conn.execute(query):
                seen = best.get(r.unit_id)
                if seen is None or (r.created_at, r.prediction_id) > seen:
                    best[r.unit_id] = (r.created_at, r.prediction_id)
    return {unit: pid for unit, (_, pid) in best.items()}


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
