"""Batch runs and their chunks, batch predictions and rejects, and the stored-prediction lookup.

A run row says what was scored with which version into where, and how it went; a chunk row
says one chunk is done. :func:`write_chunk` stores a chunk's predictions, its rejects and its
done-marker in one transaction, which is what makes a resumed run exactly-once. Its bulk loads
do the least work per row each database allows:

* SQLite: ``executemany`` on the transaction's own connection, 100 rows per statement, the
  run's constants written into the statement once, so only the varying values are bound, with
  a page cache large enough for the primary-key index's hot pages (``_SQLITE_CACHE_KIB``);
* PostgreSQL: ``COPY ... FROM STDIN`` in the binary format, each row's bytes assembled
  column-wise by Arrow (:func:`_binary_copy`): the server then parses no text (no CSV
  fields, no timestamps, no integers), which cuts its work per row by about a quarter.

Runs come back as dicts keyed by the fields of :class:`~slipway.batch.BatchRun`.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from slipway.clock import utcnow
from slipway.exceptions import RunConflict
from slipway.store.engine import Store
from slipway.store.schema import (
    batch_chunks,
    batch_feedback,
    batch_inputs,
    batch_predictions,
    batch_rejects,
    batch_runs,
)

_COLUMNS = "model_name, key, run_id, version, sha256, label, probabilities, value, scored_at"
# Constant statements (no user text in them): these paths bypass SQLAlchemy's per-row work.
_INSERT = f"INSERT INTO batch_predictions ({_COLUMNS}) VALUES "  # noqa: S608
_ROWS_PER_STATEMENT = 100
# Model names, run ids, hashes and timestamps only ever use these characters.
_LINES_PER_FETCH = 50_000
_SAFE_LITERAL = re.compile(r"[A-Za-z0-9_.:+ -]*")
# The batch writer's SQLite page cache (KiB; the default is 2 MiB). Chunks whose keys
# interleave with earlier chunks' keys touch index pages all over the primary key; a larger
# cache keeps more of them, which cut SQLite's CPU per row by 10-20% at 2M rows (16, 32 and
# 64 MiB measured alike within noise). Per connection, bounded: memory stays flat.
_SQLITE_CACHE_KIB = 32_768
# PostgreSQL's binary COPY: signature, flags, header extension length; then the tuples; then
# a field count of -1. Timestamps are microseconds since 2000-01-01.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = struct.pack(">h", -1)
_PG_EPOCH = datetime(2000, 1, 1)


@dataclass(frozen=True)
class ChunkRecord:
    """One finished chunk of a run."""

    chunk: int
    first_row: int
    rows_in: int
    rows_scored: int
    rows_rejected: int


@dataclass(frozen=True)
class RunContext:
    """What a writer needs to know about the run, small enough to send to Dask workers."""

    run_id: str
    owner: str
    model_name: str
    version: int
    sha256: str
    keep_inputs: bool = False  # each scored row's inputs are stored too (batch_inputs)


@dataclass(frozen=True)
class StoredPrediction:
    """A precomputed batch prediction of one key, with its lineage."""

    model_name: str
    key: str
    version: int
    run_id: str
    sha256: str
    scored_at: datetime
    label: Any = None
    probabilities: dict[str, float] | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: label and probabilities (or value), version, run id, scored_at."""
        out = dict(self.__dict__)
        out["scored_at"] = self.scored_at.isoformat()
        return out


class Rejected(Protocol):
    """An input row that was not scored, as ``batch_rejects`` keeps it."""

    @property
    def row_number(self) -> int: ...
    @property
    def key(self) -> str | None: ...
    @property
    def row(self) -> dict[str, Any]: ...
    @property
    def reasons(self) -> list[dict[str, Any]]: ...


# -- runs ---------------------------------------------------------------------------------------


def add_run(store: Store, run_id: str, **fields: Any) -> None:
    """Record a new run as running; ``fields`` are the ``batch_runs`` columns to set."""
    now = utcnow()
    with store.write() as conn:
        conn.execute(
            batch_runs.insert().values(
                run_id=run_id, status="running", started_at=now, heartbeat_at=now, **fields
            )
        )


def claim_run(store: Store, run_id: str, owner: str) -> None:
    """Running again, held by ``owner``."""
    _update_run(
        store,
        run_id,
        status="running",
        owner=owner,
        heartbeat_at=utcnow(),
        ended_at=None,
        error=None,
    )


def set_progress(store: Store, run_id: str, progress: dict[str, Any]) -> None:
    """Replace the run's progress facts."""
    _update_run(store, run_id, progress=progress)


def runs(
    store: Store, *, run_id: str | None = None, model: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Runs newest first, each with ``chunks_done``: the one with ``run_id``, or those of
    ``model``, or all."""
    done = (
        sa.select(sa.func.count())
        .where(batch_chunks.c.run_id == batch_runs.c.run_id)
        .scalar_subquery()
    )
    query = (
        sa.select(batch_runs, done.label("chunks_done"))
        .order_by(batch_runs.c.started_at.desc(), batch_runs.c.run_id.desc())
        .limit(limit)
    )
    if run_id is not None:
        query = query.where(batch_runs.c.run_id == run_id)
    if model is not None:
        query = query.where(batch_runs.c.model_name == model)
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def finish_run(store: Store, run_id: str, status: str, error: str | None = None) -> None:
    """End a run; its counts are recomputed from its chunk rows."""
    totals = sa.select(
        sa.func.coalesce(sa.func.sum(batch_chunks.c.rows_in), 0),
        sa.func.coalesce(sa.func.sum(batch_chunks.c.rows_scored), 0),
        sa.func.coalesce(sa.func.sum(batch_chunks.c.rows_rejected), 0),
    ).where(batch_chunks.c.run_id == run_id)
    with store.write() as conn:
        rows_in, scored, rejected = conn.execute(totals).one()
        now = utcnow()
        conn.execute(
            batch_runs.update()
            .where(batch_runs.c.run_id == run_id)
            .values(
                status=status,
                error=error,
                ended_at=now,
                heartbeat_at=now,
                rows_in=int(rows_in),
                rows_scored=int(scored),
                rows_rejected=int(rejected),
            )
        )


def _update_run(store: Store, run_id: str, **values: Any) -> None:
    with store.write() as conn:
        conn.execute(batch_runs.update().where(batch_runs.c.run_id == run_id).values(**values))


# -- chunks -------------------------------------------------------------------------------------


def chunks(store: Store, run_id: str) -> dict[int, ChunkRecord]:
    """The run's finished chunks by number."""
    cols = [batch_chunks.c[n] for n in ChunkRecord.__dataclass_fields__]
    with store.read() as conn:
        rows = conn.execute(sa.select(*cols).where(batch_chunks.c.run_id == run_id)).all()
    return {r.chunk: ChunkRecord(*r) for r in rows}


def record_chunks(store: Store, run_id: str, owner: str, records: Sequence[ChunkRecord]) -> bool:
    """Mark chunks done in one transaction, if ``owner`` still holds the run (else
    :class:`RunConflict`); False, and nothing recorded, when one of them was recorded already."""
    try:
        with store.write() as conn:
            for rec in records:
                _record_chunk(conn, run_id, owner, rec)
    except sa.exc.IntegrityError:
        return False
    return True


def forget_chunks(store: Store, run_id: str, numbers: Iterable[int]) -> None:
    """Drop chunk rows whose output is gone, so those chunks are scored again."""
    numbers = list(numbers)
    if not numbers:
        return
    with store.write() as conn:
        conn.execute(
            batch_chunks.delete().where(
                batch_chunks.c.run_id == run_id, batch_chunks.c.chunk.in_(numbers)
            )
        )


def write_chunk(
    store: Store,
    ctx: RunContext,
    rec: ChunkRecord,
    columns: Mapping[str, pa.Array],
    scored_at: datetime,
    rejects: Sequence[Rejected],
) -> bool:
    """A chunk's predictions, its rejects and its done-marker, in one transaction.

    ``columns`` are ``key``, ``label``, ``probabilities`` (JSON text) and ``value``, in key
    order, and ``inputs`` (JSON text) for a run that keeps them. False, and nothing written,
    when the database refused a duplicate: the chunk was recorded already, or a key repeats
    one this run stored.
    """
    try:
        with store.write() as conn:
            if rec.rows_scored and conn.dialect.name == "postgresql":
                _copy_predictions(conn, ctx, columns, scored_at)
            elif rec.rows_scored:
                conn.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
                _insert_predictions(conn, ctx, columns, scored_at)
            if rec.rows_scored and "inputs" in columns:
                _write_inputs(conn, ctx, columns)
            if rejects:
                conn.execute(
                    batch_rejects.insert(),
                    [
                        {
                            "run_id": ctx.run_id,
                            "row_number": r.row_number,
                            "key": r.key,
                            "row": r.row,
                            "reasons": r.reasons,
                        }
                        for r in rejects
                    ],
                )
            _record_chunk(conn, ctx.run_id, ctx.owner, rec)
    except (sa.exc.IntegrityError, _driver_integrity_error(store)):
        # The bulk loads go through the driver's own cursor (executemany, COPY), so a repeated
        # key surfaces as the driver's IntegrityError (sqlite3's, psycopg's), not SQLAlchemy's.
        return False
    return True


def _driver_integrity_error(store: Store) -> type[Exception]:
    dbapi = store.engine.dialect.dbapi
    return sa.exc.IntegrityError if dbapi is None else dbapi.IntegrityError


def _record_chunk(conn: sa.Connection, run_id: str, owner: str, rec: ChunkRecord) -> None:
    # The run's row is updated last so that, on PostgreSQL, its row lock is held only for the
    # moment before commit and parallel writers do not queue behind each other.
    conn.execute(batch_chunks.insert().values(run_id=run_id, done_at=utcnow(), **rec.__dict__))
    held = conn.execute(
        batch_runs.update()
        .where(batch_runs.c.run_id == run_id, batch_runs.c.owner == owner)
        .values(
            rows_in=batch_runs.c.rows_in + rec.rows_in,
            rows_scored=batch_runs.c.rows_scored + rec.rows_scored,
            rows_rejected=batch_runs.c.rows_rejected + rec.rows_rejected,
            heartbeat_at=utcnow(),
        )
    )
    if held.rowcount == 0:
        raise RunConflict(
            f"Batch run {run_id!r} was taken over by another process; this one stops here."
        )


# -- predictions --------------------------------------------------------------------------------


def find_prediction(store: Store, model_name: str, key: str) -> StoredPrediction | None:
    """The newest batch prediction of ``key`` by ``model_name``, from any run."""
    query = (
        sa.select(batch_predictions)
        .where(batch_predictions.c.model_name == model_name, batch_predictions.c.key == key)
        .order_by(batch_predictions.c.scored_at.desc(), batch_predictions.c.version.desc())
        .limit(1)
    )
    with store.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return StoredPrediction(
        row.model_name,
        row.key,
        row.version,
        row.run_id,
        row.sha256,
        row.scored_at,
        row.label,
        row.probabilities,
        row.value,
    )


def _scored_at(conn: sa.Connection, scored_at: datetime) -> Any:
    """The chunk's timestamp exactly as SQLAlchemy would store it on this dialect."""
    column_type = batch_predictions.c.scored_at.type.dialect_impl(conn.dialect)
    process = column_type.bind_processor(conn.dialect)
    return process(scored_at) if process else scored_at


def _insert_predictions(
    conn: sa.Connection, ctx: RunContext, cols: Mapping[str, pa.Array], scored_at: datetime
) -> None:
    """Load a chunk into SQLite with the least work per row sqlite3 allows.

    Statements of ``_ROWS_PER_STATEMENT`` rows each, run with ``executemany`` on the
    transaction's own connection; the run's constants are written into the statement once
    (they are validated identifiers, see :func:`_literal`) so only the varying values are
    bound. Together that halves the CPU time of one bound row per statement.
    """
    n = len(cols["key"])
    varying = ["key", *(c for c in ("label", "probabilities", "value") if cols[c].null_count < n)]
    constants = {
        "model_name": _literal(ctx.model_name),
        "run_id": _literal(ctx.run_id),
        "version": str(int(ctx.version)),
        "sha256": _literal(ctx.sha256),
        "scored_at": _literal(str(_scored_at(conn, scored_at))),
    }
    row = (
        "("
        + ", ".join(
            constants.get(c) or ("?" if c in varying else "NULL") for c in _COLUMNS.split(", ")
        )
        + ")"
    )
    values = np.empty((n, len(varying)), dtype=object)
    for j, name in enumerate(varying):
        values[:, j] = cols[name].to_pylist()
    per = _ROWS_PER_STATEMENT
    whole = n - n % per
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if whole:
            batches = values[:whole].reshape(-1, per * len(varying)).tolist()
            cursor.executemany(_INSERT + ", ".join([row] * per), batches)
        if n > whole:
            cursor.execute(
                _INSERT + ", ".join([row] * (n - whole)), values[whole:].ravel().tolist()
            )
    finally:
        cursor.close()


def _literal(value: str) -> str:
    """A SQL string literal of a value Slipway validated (model name, run id, hash, time)."""
    if not _SAFE_LITERAL.fullmatch(value):
        raise ValueError(f"{value!r} cannot be written into SQL as a literal")
    return f"'{value}'"


def _copy_predictions(
    conn: sa.Connection, ctx: RunContext, cols: Mapping[str, pa.Array], scored_at: datetime
) -> None:
    """Load a chunk into PostgreSQL with one binary ``COPY``: no Python object per row."""
    stamp = _scored_at(conn, scored_at)
    _binary_copy(
        conn,
        "batch_predictions",
        {
            "model_name": _text(ctx.model_name),
            "run_id": _text(ctx.run_id),
            "version": struct.pack(">i", int(ctx.version)),
            "sha256": _text(ctx.sha256),
            "scored_at": struct.pack(">q", (stamp - _PG_EPOCH) // timedelta(microseconds=1)),
        },
        {name: cols[name] for name in ("key", "label", "probabilities", "value")},
    )


def _text(value: str) -> bytes:
    return value.encode()


def _binary_copy(
    conn: sa.Connection, table: str, constants: dict[str, bytes], varying: dict[str, pa.Array]
) -> None:
    """``COPY table FROM STDIN (FORMAT binary)``, each row's bytes joined by Arrow in C++.

    A row is its field count, then each field as a 4-byte big-endian length (-1 for NULL) and
    its bytes. The run's ``constants`` (already in their binary form) come first, as one
    prefix shared by every row; then the ``varying`` columns: text (label and probabilities
    are JSON text, which the server's ``json`` input checks as it does in CSV) or float64.
    """
    names = [*constants, *varying]
    prefix = struct.pack(">h", len(names)) + b"".join(
        struct.pack(">i", len(v)) + v for v in constants.values()
    )
    parts: list[Any] = [pa.scalar(prefix, pa.large_binary())]
    for array in varying.values():
        parts += _binary_field(array)
    rows = pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=len(rows) + 1)
    body = memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]
    statement = f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT binary)"
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        copy.write(_COPY_HEADER)
        copy.write(body)
        copy.write(_COPY_TRAILER)


def _binary_field(array: pa.Array) -> list[pa.Array]:
    """One column as binary COPY fields: the lengths (-1 where null) and the bytes."""
    valid = np.ones(len(array), dtype=bool)
    if array.null_count:
        valid = np.asarray(array.is_valid())
    if pa.types.is_floating(array.type):
        numbers = np.asarray(array.cast(pa.float64()).fill_null(0.0), dtype=np.float64)
        data = _fixed(numbers.astype(">f8").tobytes(), 8, len(array))
        lengths = np.where(valid, 8, -1)
        data = pc.if_else(valid, data, pa.scalar(b"", pa.large_binary()))
    else:
        data = pc.cast(array, pa.large_binary()).fill_null(b"")
        lengths = np.where(valid, np.asarray(pc.binary_length(data)), -1)
    return [_fixed(lengths.astype(">i4").tobytes(), 4, len(array)), data]


def _fixed(raw: bytes, width: int, n: int) -> pa.Array:
    """``n`` values of ``width`` bytes each, as large_binary for Arrow's element-wise join."""
    array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(raw)])
    return pc.cast(array, pa.large_binary())


# -- kept inputs (batch_inputs) -------------------------------------------------------------


def _write_inputs(conn: sa.Connection, ctx: RunContext, cols: Mapping[str, pa.Array]) -> None:
    """A chunk's kept inputs, beside its predictions in the same transaction."""
    if conn.dialect.name == "postgresql":
        _binary_copy(
            conn,
            "batch_inputs",
            {"model_name": _text(ctx.model_name), "run_id": _text(ctx.run_id)},
            {"key": cols["key"], "inputs": cols["inputs"]},
        )
        return
    insert = (
        "INSERT INTO batch_inputs (model_name, key, run_id, inputs) "  # noqa: S608
        f"VALUES ({_literal(ctx.model_name)}, ?, {_literal(ctx.run_id)}, ?)"
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        pairs = list(zip(cols["key"].to_pylist(), cols["inputs"].to_pylist(), strict=True))
        cursor.executemany(insert, pairs)
    finally:
        cursor.close()


@dataclass(frozen=True)
class KeptRun:
    """A batch run of a model whose database output kept its inputs."""

    run_id: str
    version: int
    rows: int


def runs_with_inputs(store: Store, model: str, run_id: str | None = None) -> list[KeptRun]:
    """The runs of ``model`` (or the one ``run_id``) with kept inputs, oldest first."""
    query = (
        sa.select(batch_inputs.c.run_id, sa.func.count().label("rows"))
        .where(batch_inputs.c.model_name == model)
        .group_by(batch_inputs.c.run_id)
    )
    if run_id is not None:
        query = query.where(batch_inputs.c.run_id == run_id)
    with store.read() as conn:
        counts = {r.run_id: int(r.rows) for r in conn.execute(query)}
        found = conn.execute(
            sa.select(batch_runs.c.run_id, batch_runs.c.version)
            .where(batch_runs.c.run_id.in_(list(counts)))
            .order_by(batch_runs.c.started_at, batch_runs.c.run_id)
        ).all()
    return [KeptRun(r.run_id, int(r.version), counts[r.run_id]) for r in found]


def kept_lines(
    store: Store,
    model: str,
    start: datetime,
    end: datetime,
    run_id: str | None = None,
    *,
    labels: bool = False,
) -> Iterator[bytes]:
    """Batch predictions of ``model`` scored in [start, end) that kept their inputs (only
    ``run_id``'s when given), as blocks of JSON lines in the prediction log's reading format
    (see :func:`slipway.store.predictions.log_lines`): the time is when a row was scored.
    ``labels=True`` keeps only the rows with a label sent by their key (``batch_feedback``)
    and adds it, as the log adds a prediction's feedback."""
    p, i, f = batch_predictions, batch_inputs, batch_feedback
    columns: list[Any] = [
        p.c.scored_at,
        p.c.version,
        i.c.inputs,
        sa.cast(p.c.label, sa.Text),
        sa.cast(p.c.probabilities, sa.Text),
        p.c.value,
    ]
    query = sa.select(*columns, *((f.c.label, f.c.received_at) if labels else ())).join(
        i,
        sa.and_(i.c.model_name == p.c.model_name, i.c.key == p.c.key, i.c.run_id == p.c.run_id),
    )
    if labels:
        query = query.join(
            f,
            sa.and_(f.c.model_name == p.c.model_name, f.c.key == p.c.key, f.c.run_id == p.c.run_id),
        )
    query = query.where(
        p.c.model_name == model, p.c.scored_at >= start, p.c.scored_at < end
    ).order_by(p.c.scored_at, p.c.run_id, p.c.key)
    if run_id is not None:
        query = query.where(p.c.run_id == run_id)
    with store.read() as conn:
        result = conn.execution_options(yield_per=_LINES_PER_FETCH).execute(query)
        for rows in result.partitions():
            lines = []
            for at, version, inputs, label, proba, value, *truth in rows:
                if value is not None:
                    value = repr(float(value)) if math.isfinite(value) else None
                out = ",".join(
                    f'"{k}":{v}'
                    for k, v in (("label", label), ("probabilities", proba), ("value", value))
                    if v is not None
                )
                stamp = at.replace(tzinfo=None).isoformat(sep=" ")
                line = f'{{"t":"{stamp}","v":{version},"i":{inputs},"o":{{{out}}}'
                if truth:
                    line += _label_fields(*truth)
                lines.append(line + "}")
            yield ("\n".join(lines) + "\n").encode()


def _label_fields(label: Any, received_at: datetime) -> str:
    """``,"l":...,"r":...`` as the log writes a feedback label: the label's JSON text, as a
    JSON string, and when it arrived (UTC, no zone)."""
    text = orjson.dumps(orjson.dumps(label).decode()).decode()
    return f',"l":{text},"r":"{received_at.replace(tzinfo=None).isoformat(sep=" ")}"'


def kept_rejects(store: Store, run_ids: Sequence[str]) -> list[tuple[datetime, list[Any]]]:
    """The rejected rows of runs that kept their inputs: when each run started, and the
    row's problems (refusals, as the prediction log's contract violations are)."""
    if not run_ids:
        return []
    query = (
        sa.select(batch_runs.c.started_at, batch_rejects.c.reasons)
        .join(batch_runs, batch_runs.c.run_id == batch_rejects.c.run_id)
        .where(batch_rejects.c.run_id.in_(list(run_ids)))
    )
    with store.read() as conn:
        return [(r.started_at, list(r.reasons or [])) for r in conn.execute(query)]
