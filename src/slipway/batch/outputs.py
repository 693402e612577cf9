"""Batch outputs: the store's database, or Parquet (one file, or a directory of parts).

Each output writes a chunk so that "the chunk is done" and "its rows are there" become true
at the same instant, which is what makes a resumed run exactly-once:

* database: the chunk's predictions, its rejects and its ``batch_chunks`` row are one
  transaction (SQLite: ``executemany`` in WAL mode; PostgreSQL: ``COPY``);
* Parquet: the chunk is written to a temporary file, fsynced and renamed to
  ``part-NNNNNN.parquet``; a part that exists is a chunk that is done. A single-file output
  is assembled from its parts, in input order, once every chunk is done.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from slipway.batch.runs import ChunkRecord, RunLog
from slipway.batch.scoring import PROBA_PREFIX, ScoredChunk
from slipway.contract import jsonable
from slipway.exceptions import BatchInputError
from slipway.store import Store
from slipway.store.schema import batch_predictions, batch_rejects

_COLUMNS = "model_name, key, run_id, version, sha256, label, probabilities, value, scored_at"
# Constant statements (no user text in them); bulk paths below bypass SQLAlchemy's per-row work.
_INSERT = f"INSERT INTO batch_predictions ({_COLUMNS}) VALUES "  # noqa: S608
_ROWS_PER_STATEMENT = 100
# Model names, run ids, hashes and timestamps only ever use these characters.
_SAFE_LITERAL = re.compile(r"[A-Za-z0-9_.:+ -]*")
_COPY = f"COPY batch_predictions ({_COLUMNS}) FROM STDIN (FORMAT csv)"
_META = "slipway"
_PART = "part-{:06d}.parquet"


@dataclass(frozen=True)
class RunContext:
    """What a writer needs to know about the run, small enough to send to Dask workers."""

    run_id: str
    owner: str
    model_name: str
    version: int
    sha256: str


def chunk_record(chunk: ScoredChunk) -> ChunkRecord:
    """The bookkeeping row of a scored chunk."""
    return ChunkRecord(
        chunk.index, chunk.first_row, chunk.rows_in, chunk.rows_scored, chunk.rows_rejected
    )


@dataclass(frozen=True)
class DatabaseOutput:
    """``batch_predictions`` and ``batch_rejects`` in the store's database."""

    def describe(self) -> dict[str, Any]:
        """What the run records as its output."""
        return {"kind": "db"}

    def prepare(self, run_id: str, *, resume: bool, overwrite: bool) -> None:
        """Nothing to set up: the tables exist."""

    def done(self, runs: RunLog, run_id: str) -> dict[int, ChunkRecord]:
        """Chunks whose rows are committed."""
        return runs.chunks(run_id)

    def write(self, store: Store, chunk: ScoredChunk, ctx: RunContext) -> None:
        """Predictions, rejects and the chunk's done-marker in one transaction."""
        try:
            with store.write() as conn:
                if store.dialect == "postgresql":
                    _copy_predictions(conn, chunk, ctx)
                else:
                    _insert_predictions(conn, chunk, ctx)
                if chunk.rejects:
                    conn.execute(batch_rejects.insert(), _reject_rows(chunk, ctx.run_id))
                RunLog(store).record_chunk(conn, ctx.run_id, ctx.owner, chunk_record(chunk))
        except sa.exc.IntegrityError:
            if chunk.index in RunLog(store).chunks(ctx.run_id):
                return  # another process holding this run wrote the same chunk first
            raise BatchInputError(
                f"Chunk {chunk.index} (input rows from {chunk.first_row}) repeats a key this run "
                "already stored: keys must be unique across the whole input. Choose another "
                "--key-column, or omit it to key rows by their row number."
            ) from None

    def finish(self, run_id: str, schema: pa.Schema) -> None:
        """Nothing to assemble."""

    def cleanup(self, run_id: str) -> None:
        """Nothing to remove."""


@dataclass(frozen=True)
class ParquetOutput:
    """A Parquet file (assembled from parts at the end) or a directory of parts.

    Rejects go beside the output: ``NAME.rejects.parquet`` next to a file, ``_rejects/``
    inside a directory (Parquet readers skip ``_`` entries).
    """

    path: Path
    layout: Literal["file", "directory"]

    @property
    def rejects_path(self) -> Path:
        """Where rejected rows end up."""
        if self.layout == "directory":
            return self.path / "_rejects"
        return self.path.with_name(_stem(self.path) + ".rejects.parquet")

    def parts(self, run_id: str) -> Path:
        """Directory the chunks' part files go to."""
        if self.layout == "directory":
            return self.path
        return self.path.parent / f".{self.path.name}.{run_id}.parts"

    def describe(self) -> dict[str, Any]:
        """What the run records as its output."""
        return {
            "kind": "parquet",
            "path": str(self.path),
            "layout": self.layout,
            "rejects": str(self.rejects_path),
        }

    def prepare(self, run_id: str, *, resume: bool, overwrite: bool) -> None:
        """Create the parts directory; refuse to mix with another run's output."""
        parts = self.parts(run_id)
        if self.layout == "directory":
            if self.path.exists() and not self.path.is_dir():
                raise BatchInputError(f"Output {str(self.path)!r} exists and is not a directory.")
            owner = _manifest(self.path).get("run_id")
            ours = resume and owner == run_id
            leftovers = any(self.path.glob("part-*.parquet")) or owner is not None
            if leftovers and not ours:
                if not overwrite:
                    raise BatchInputError(
                        f"Output directory {str(self.path)!r} already holds "
                        f"{'the output of run ' + repr(owner) if owner else 'Parquet parts'}; "
                        "write to a new directory or pass --overwrite."
                    )
                for old in self.path.glob("part-*.parquet"):
                    old.unlink()
                shutil.rmtree(self.path / "_rejects", ignore_errors=True)
        else:
            if not self.path.parent.is_dir():
                raise BatchInputError(
                    f"Output directory {str(self.path.parent)!r} does not exist; create it first."
                )
            taken = [p for p in (self.path, self.rejects_path) if p.exists()]
            if taken and not resume and not overwrite:
                raise BatchInputError(
                    f"Output {str(taken[0])!r} already exists; choose another path or pass "
                    "--overwrite."
                )
            if not resume:
                shutil.rmtree(parts, ignore_errors=True)
        (parts / "_rejects").mkdir(parents=True, exist_ok=True)
        if self.layout == "directory":
            _write_json(self.path / "_slipway.json", {"run_id": run_id, "status": "running"})

    def done(self, runs: RunLog, run_id: str) -> dict[int, ChunkRecord]:
        """Chunks whose part file exists, read from the parts' own metadata."""
        out = {}
        for part in sorted(self.parts(run_id).glob("part-*.parquet")):
            meta = pq.read_metadata(part).metadata or {}
            if _META.encode() in meta:
                rec = ChunkRecord(**json.loads(meta[_META.encode()]))
                out[rec.chunk] = rec
        return out

    def write(self, store: Store, chunk: ScoredChunk, ctx: RunContext) -> None:
        """Rejects part, then the predictions part (whose arrival marks the chunk done)."""
        parts = self.parts(ctx.run_id)
        rec = chunk_record(chunk)
        name = _PART.format(chunk.index)
        if chunk.rejects:
            _atomic_parquet(rejects_table(chunk, ctx.run_id), parts / "_rejects" / name)
        _atomic_parquet(chunk.predictions, parts / name, {_META: json.dumps(rec.__dict__)})
        try:
            with store.write() as conn:
                RunLog(store).record_chunk(conn, ctx.run_id, ctx.owner, rec)
        except sa.exc.IntegrityError:
            pass  # recorded already: another holder wrote this chunk, or a resume reconciled it

    def finish(self, run_id: str, schema: pa.Schema) -> None:
        """Assemble a single-file output from its parts, in chunk order, atomically."""
        parts = self.parts(run_id)
        if self.layout == "directory":
            _write_json(self.path / "_slipway.json", {"run_id": run_id, "status": "succeeded"})
            return
        _concat(sorted(parts.glob("part-*.parquet")), self.path, schema)
        rejects = sorted((parts / "_rejects").glob("part-*.parquet"))
        if rejects:
            _concat(rejects, self.rejects_path, REJECTS_SCHEMA)
        else:
            self.rejects_path.unlink(missing_ok=True)

    def cleanup(self, run_id: str) -> None:
        """Remove a single-file output's parts once the run is recorded as succeeded."""
        if self.layout == "file":
            shutil.rmtree(self.parts(run_id), ignore_errors=True)
        elif not any((self.path / "_rejects").iterdir()):
            (self.path / "_rejects").rmdir()


Output = DatabaseOutput | ParquetOutput


def open_output(spec: str | Path) -> Output:
    """``db``, a ``.parquet`` file, or a directory (existing, or written with a trailing /)."""
    text = str(spec)
    if text == "db":
        return DatabaseOutput()
    # Absolute, so Dask workers and a resume from another directory write to the same place.
    path = Path(text).expanduser().absolute()
    if text.endswith(("/", os.sep)) or path.is_dir():
        return ParquetOutput(path, "directory")
    if path.suffix.lower() in (".parquet", ".pq"):
        return ParquetOutput(path, "file")
    raise BatchInputError(
        f"--output {text!r}: use db (the store's database), a .parquet file, or a directory "
        "ending in / for one Parquet part per chunk."
    )


# -- database loading ---------------------------------------------------------------------


def db_columns(chunk: ScoredChunk) -> dict[str, pa.Array]:
    """The chunk's key, label, probabilities and value as the database stores them.

    ``label`` is JSON text of the class, ``probabilities`` JSON text of {class: p} as in
    ``Predictions.records()``; both are built column-wise by Arrow, not row by row.
    """
    # Rows in key order: the primary key index (model_name, key, run_id) then takes each
    # chunk's entries in order instead of at random, which roughly halves PostgreSQL's load
    # time and helps SQLite's.
    table = chunk.predictions
    table = table.take(pc.sort_indices(table["key"]))
    n = table.num_rows
    names = table.column_names
    out: dict[str, pa.Array] = {"key": table["key"].combine_chunks()}
    out["label"] = _label_json(table["label"]) if "label" in names else pa.nulls(n, pa.string())
    proba = [c for c in names if c.startswith(PROBA_PREFIX)]
    out["probabilities"] = _proba_json(table, proba) if proba else pa.nulls(n, pa.string())
    value = table["value"].combine_chunks() if "value" in names else pa.nulls(n, pa.float64())
    out["value"] = value
    return out


def _label_json(labels: pa.ChunkedArray) -> pa.Array:
    encoded = pc.dictionary_encode(labels.combine_chunks())
    texts = [orjson.dumps(jsonable(v)).decode() for v in encoded.dictionary.to_pylist()]
    return pa.array(texts, pa.string()).take(encoded.indices)


def _proba_json(table: pa.Table, columns: list[str]) -> pa.Array:
    arrays = [table[c].combine_chunks() for c in columns]
    keys = [orjson.dumps(c[len(PROBA_PREFIX) :]).decode() for c in columns]
    if all(pc.all(pc.is_finite(a)).as_py() is not False for a in arrays):
        parts: list[Any] = []
        for i, (key, arr) in enumerate(zip(keys, arrays, strict=True)):
            parts += [("{" if i == 0 else ", ") + key + ": ", pc.cast(arr, pa.string())]
        return pc.binary_join_element_wise(*parts, "}", "")
    # NaN or infinity cannot be JSON numbers: spell them as jsonable() does, row by row.
    rows = zip(*(a.to_pylist() for a in arrays), strict=True)
    plain = [c[len(PROBA_PREFIX) :] for c in columns]
    texts = [orjson.dumps({k: jsonable(v) for k, v in zip(plain, r, strict=True)}) for r in rows]
    return pa.array([t.decode() for t in texts], pa.string())


def _scored_at(conn: sa.Connection, chunk: ScoredChunk) -> Any:
    """The chunk's timestamp exactly as SQLAlchemy would store it on this dialect."""
    column_type = batch_predictions.c.scored_at.type.dialect_impl(conn.dialect)
    process = column_type.bind_processor(conn.dialect)
    return process(chunk.scored_at) if process else chunk.scored_at


def _insert_predictions(conn: sa.Connection, chunk: ScoredChunk, ctx: RunContext) -> None:
    """Load a chunk into SQLite with the least work per row sqlite3 allows.

    Statements of ``_ROWS_PER_STATEMENT`` rows each, run with ``executemany`` on the
    transaction's own connection; the run's constants are written into the statement once
    (they are validated identifiers, see :func:`_literal`) so only the varying values are
    bound. Together that halves the CPU time of one bound row per statement.
    """
    n = chunk.rows_scored
    if n == 0:
        return
    cols = db_columns(chunk)
    varying = ["key", *(c for c in ("label", "probabilities", "value") if cols[c].null_count < n)]
    constants = {
        "model_name": _literal(ctx.model_name),
        "run_id": _literal(ctx.run_id),
        "version": str(int(ctx.version)),
        "sha256": _literal(ctx.sha256),
        "scored_at": _literal(str(_scored_at(conn, chunk))),
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


def _copy_predictions(conn: sa.Connection, chunk: ScoredChunk, ctx: RunContext) -> None:
    # COPY ... FROM STDIN with CSV that Arrow writes in C++: no Python object per row.
    cols = db_columns(chunk)
    n = chunk.rows_scored
    stamp = _scored_at(conn, chunk)
    table = pa.table(
        {
            "model_name": _repeat(ctx.model_name, n),
            "key": cols["key"],
            "run_id": _repeat(ctx.run_id, n),
            "version": pa.array(np.full(n, ctx.version, dtype=np.int64)),
            "sha256": _repeat(ctx.sha256, n),
            "label": cols["label"],
            "probabilities": cols["probabilities"],
            "value": cols["value"],
            "scored_at": _repeat(stamp.isoformat(sep=" "), n),
        }
    )
    buf = io.BytesIO()
    pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False))
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(_COPY) as copy:  # type: ignore[union-attr]
        copy.write(buf.getbuffer())


def _repeat(value: str, n: int) -> pa.Array:
    indices = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()))


def _reject_rows(chunk: ScoredChunk, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "row_number": r.row_number,
            "key": r.key,
            "row": r.row,
            "reasons": r.reasons,
        }
        for r in chunk.rejects
    ]


REJECTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("row_number", pa.int64()),
        ("key", pa.string()),
        ("row", pa.string()),
        ("reasons", pa.string()),
    ]
)


def rejects_table(chunk: ScoredChunk, run_id: str) -> pa.Table:
    """A chunk's rejects as written to Parquet (row and reasons as JSON text)."""
    rejects = chunk.rejects
    columns = [
        [run_id] * len(rejects),
        [r.row_number for r in rejects],
        [r.key for r in rejects],
        [orjson.dumps(r.row).decode() for r in rejects],
        [orjson.dumps(r.reasons).decode() for r in rejects],
    ]
    return pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, REJECTS_SCHEMA, strict=True)],
        schema=REJECTS_SCHEMA,
    )


# -- files ----------------------------------------------------------------------------------


def _atomic_parquet(table: pa.Table, target: Path, meta: dict[str, str] | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            # store_schema=False: one-value dictionary columns read back as plain strings.
            with pq.ParquetWriter(fh, table.schema, store_schema=False) as writer:
                writer.write_table(table)
                if meta:
                    writer.add_key_value_metadata(meta)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _concat(parts: list[Path], target: Path, schema: pa.Schema) -> None:
    """Stream parts into one file (one row group per part): memory stays one part."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            plain = pq.read_schema(parts[0]).remove_metadata() if parts else schema
            with pq.ParquetWriter(fh, plain, store_schema=False) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part).replace_schema_metadata(None))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((directory / "_slipway.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name
