"""Batch outputs: the store's database, or Parquet (one file, or a directory of parts).

Each output writes a chunk so that "the chunk is done" and "its rows are there" become true
at the same instant, which is what makes a resumed run exactly-once:

* database: the chunk's predictions, its rejects and its ``batch_chunks`` row are one
  transaction (:func:`slipway.store.batch.write_chunk`, with bulk loads). :func:`db_columns`
  builds the JSON text of ``label`` and ``probabilities`` column-wise with Arrow compute, rows
  in key order so the primary-key index is filled in order rather than at random;
* Parquet: the chunk is written to a temporary file, fsynced and renamed to
  ``part-NNNNNN.parquet``; a part that exists is a chunk that is done. A single-file output
  is assembled from its parts, in input order, once every chunk is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slipway.batch.runs import ChunkRecord, RunLog
from slipway.batch.scoring import INPUT_PREFIX, PredictedChunk
from slipway.exceptions import BatchInputError
from slipway.files import atomic_write
from slipway.predict import Predictions
from slipway.problems import jsonable
from slipway.store import Store
from slipway.store.batch import RunContext, write_chunk

_META = "slipway"
_PART = "part-{:06d}.parquet"


def chunk_record(chunk: PredictedChunk) -> ChunkRecord:
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

    def write(self, store: Store, chunk: PredictedChunk, ctx: RunContext) -> None:
        """Predictions, rejects and the chunk's done-marker in one transaction."""
        columns = db_columns(chunk)
        rec = chunk_record(chunk)
        if not write_chunk(store, ctx, rec, columns, chunk.scored_at, chunk.rejects):
            if chunk.index in RunLog(store).chunks(ctx.run_id):
                return  # another process holding this run wrote the same chunk first
            raise repeated_key(chunk.index, chunk.first_row) from None

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
        # Temporary files of a process that was killed while writing them.
        for leftover in [
            *parts.glob(".part-*.tmp"),
            *(parts / "_rejects").glob(".part-*.tmp"),
            *self.path.parent.glob(f".{self.path.name}.*.tmp"),
            *self.path.parent.glob(f".{self.rejects_path.name}.*.tmp"),
        ]:
            leftover.unlink(missing_ok=True)
        if self.layout == "directory":
            _write_json(self.path / "_slipway.json", {"run_id": run_id, "status": "running"})

    def done(self, runs: RunLog, run_id: str) -> dict[int, ChunkRecord]:
        """Chunks whose part file exists, read from the parts' own metadata."""
        out = {}
        for part in sorted(self.parts(run_id).glob("part-*.parquet")):
            rec = _part_record(part)
            if rec is not None:
                out[rec.chunk] = rec
        return out

    def write(self, store: Store, chunk: PredictedChunk, ctx: RunContext) -> None:
        """Rejects part, then the predictions part (whose arrival marks the chunk done)."""
        parts = self.parts(ctx.run_id)
        rec = chunk_record(chunk)
        name = _PART.format(chunk.index)
        if chunk.rejects:
            _atomic_parquet(rejects_table(chunk, ctx.run_id), parts / "_rejects" / name)
        _atomic_parquet(chunk.predictions, parts / name, {_META: json.dumps(rec.__dict__)})
        # False when recorded already: another holder wrote this chunk, or a resume reconciled it.
        RunLog(store).record_chunks(ctx.run_id, ctx.owner, [rec])

    def finish(self, run_id: str, schema: pa.Schema) -> None:
        """Refuse keys repeated across chunks, then assemble a single-file output from its
        parts, in chunk order, atomically."""
        parts = self.parts(run_id)
        _refuse_repeated_keys(sorted(parts.glob("part-*.parquet")))
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
            return
        with contextlib.suppress(OSError):  # not empty: there are rejects to keep
            (self.path / "_rejects").rmdir()


Output = DatabaseOutput | ParquetOutput


def repeated_key(chunk: int, first_row: int, detail: str = "") -> BatchInputError:
    """The error of a chunk holding a key that an earlier chunk of the run already stored."""
    return BatchInputError(
        f"Chunk {chunk} (input rows from {first_row}) repeats a key this run already stored"
        f"{detail}: keys must be unique across the whole input. Choose another --key-column, "
        "or omit it to key rows by their row number."
    )


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


REJECTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("row_number", pa.int64()),
        ("key", pa.string()),
        ("row", pa.string()),
        ("reasons", pa.string()),
    ]
)


def rejects_table(chunk: PredictedChunk, run_id: str) -> pa.Table:
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


# -- database columns ---------------------------------------------------------------------


def db_columns(chunk: PredictedChunk) -> dict[str, pa.Array]:
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
    proba = [c for c in names if Predictions.proba_class(c) is not None]
    out["probabilities"] = _proba_json(table, proba) if proba else pa.nulls(n, pa.string())
    value = table["value"].combine_chunks() if "value" in names else pa.nulls(n, pa.float64())
    out["value"] = value
    inputs = [c for c in names if c.startswith(INPUT_PREFIX)]
    if inputs:
        out["inputs"] = _inputs_json(table, inputs)
    return out


def _inputs_json(table: pa.Table, columns: list[str]) -> pa.Array:
    """Each row's kept inputs as one JSON object {field: value}, as the prediction log holds
    a request's row: numbers with every digit, NaN as null."""
    names = [c[len(INPUT_PREFIX) :] for c in columns]
    values = [table[c].to_pylist() for c in columns]
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    texts = [
        orjson.dumps(dict(zip(names, row, strict=True)), option=options).decode()
        for row in zip(*values, strict=True)
    ]
    return pa.array(texts, pa.string())


def _label_json(labels: pa.ChunkedArray) -> pa.Array:
    encoded = pc.dictionary_encode(labels.combine_chunks())
    texts = [orjson.dumps(jsonable(v)).decode() for v in encoded.dictionary.to_pylist()]
    return pa.array(texts, pa.string()).take(encoded.indices)


def _proba_json(table: pa.Table, columns: list[str]) -> pa.Array:
    arrays = [table[c].combine_chunks() for c in columns]
    plain = [Predictions.proba_class(c) for c in columns]
    keys = [orjson.dumps(k).decode() for k in plain]
    if all(pc.all(pc.is_finite(a)).as_py() is not False for a in arrays):
        parts: list[Any] = []
        for i, (key, arr) in enumerate(zip(keys, arrays, strict=True)):
            parts += [("{" if i == 0 else ", ") + key + ": ", pc.cast(arr, pa.string())]
        return pc.binary_join_element_wise(*parts, "}", "")
    # NaN or infinity cannot be JSON numbers: null, as jsonable() writes them, row by row.
    rows = zip(*(a.to_pylist() for a in arrays), strict=True)
    texts = [orjson.dumps({k: jsonable(v) for k, v in zip(plain, r, strict=True)}) for r in rows]
    return pa.array([t.decode() for t in texts], pa.string())


# -- files ----------------------------------------------------------------------------------


def _atomic_parquet(table: pa.Table, target: Path, meta: dict[str, str] | None = None) -> None:
    # store_schema=False: one-value dictionary columns read back as plain strings.
    with (
        atomic_write(target) as fh,
        pq.ParquetWriter(fh, table.schema, store_schema=False) as writer,
    ):
        writer.write_table(table)
        if meta:
            writer.add_key_value_metadata(meta)


def _concat(parts: list[Path], target: Path, schema: pa.Schema) -> None:
    """Stream parts into one file (one row group per part): memory stays one part."""
    with atomic_write(target) as fh:
        plain = pq.read_schema(parts[0]).remove_metadata() if parts else schema
        with pq.ParquetWriter(fh, plain, store_schema=False) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part).replace_schema_metadata(None))


def _refuse_repeated_keys(parts: list[Path]) -> None:
    """Raise :func:`repeated_key` if a key is in two parts (a Parquet output has no primary key).

    A chunk never repeats a key of its own (scoring refuses that), so a key whose lowest and
    highest chunk differ was stored twice. One pass over the key columns, grouped in Arrow.
    """
    records = {p: rec for p in parts if (rec := _part_record(p)) is not None}
    if len(records) < 2:
        return
    keys = pa.concat_tables(
        pq.read_table(p, columns=["key"]).append_column(
            "chunk", pa.array(np.full(pq.read_metadata(p).num_rows, rec.chunk, dtype=np.int64))
        )
        for p, rec in records.items()
    )
    spans = keys.group_by("key").aggregate([("chunk", "min"), ("chunk", "max")])
    twice = spans.filter(pc.field("chunk_min") != pc.field("chunk_max"))
    if twice.num_rows == 0:
        return
    first = twice.sort_by([("chunk_max", "ascending"), ("key", "ascending")]).slice(0, 1)
    row = first.to_pylist()[0]
    by_chunk = {rec.chunk: rec for rec in records.values()}
    raise repeated_key(
        row["chunk_max"],
        by_chunk[row["chunk_max"]].first_row,
        f" ({row['key']!r}, first stored by chunk {row['chunk_min']})",
    )


def _part_record(part: Path) -> ChunkRecord | None:
    """The chunk a part file holds, from its own metadata (None for a foreign file)."""
    meta = pq.read_metadata(part).metadata or {}
    if _META.encode() not in meta:
        return None
    return ChunkRecord(**json.loads(meta[_META.encode()]))


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((directory / "_slipway.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write((json.dumps(data, indent=2) + "\n").encode())


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name
