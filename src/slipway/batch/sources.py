"""Batch inputs: CSV or Parquet files (a file, a directory or a glob), or a SQL query.

A source yields the input as numbered chunks of at most ``chunk_size`` rows, streamed so
memory stays bounded whatever the input size. Chunking is a pure function of the ordered file
list and the chunk size (each file is cut on its own, chunks numbered across files), so a
resumed run sees the same chunk numbers, row numbers and rows as the run that died.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from slipway.contract import Contract
from slipway.exceptions import BatchInputError
from slipway.store import Store
from slipway.store.query import ReadOnlyQuery

Format = Literal["parquet", "csv"]
_SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")
# Files up to this size are hashed whole; bigger ones by size, head and tail (a Parquet footer,
# in the tail, holds every row group's column statistics), so fingerprinting a terabyte of
# input does not read it twice.
FULL_HASH_LIMIT = 256 << 20
_SAMPLE = 8 << 20


@dataclass(frozen=True)
class Chunk:
    """Rows ``first_row .. first_row + len(frame) - 1`` of the input, as chunk ``index``."""

    index: int
    first_row: int
    frame: pd.DataFrame


class FileSource:
    """CSV or Parquet files, read in a fixed order (sorted paths)."""

    def __init__(self, spec: str | Path) -> None:
        self.spec = str(spec)
        self.paths = [p.absolute() for p in resolve_paths(self.spec)]
        self._root = Path(self.spec).absolute() if Path(self.spec).is_dir() else None
        formats = {file_format(p) for p in self.paths}
        if len(formats) > 1:
            raise BatchInputError(
                f"Input {self.spec!r} mixes CSV and Parquet files; score each format separately."
            )
        self.format: Format = formats.pop()

    def describe(self) -> dict[str, Any]:
        """What the run records as its source."""
        return {"kind": self.format, "input": self.spec, "paths": [str(p) for p in self.paths]}

    def columns(self) -> list[str]:
        """Column names of the first file (every file must have the contract's columns)."""
        first = self.paths[0]
        try:
            if self.format == "parquet":
                return list(pq.read_schema(first).names)
            return [str(c) for c in pd.read_csv(first, nrows=0).columns]
        except pd.errors.EmptyDataError:
            raise BatchInputError(
                f"CSV file {str(first)!r} is empty: it has no header row, so there is nothing "
                "to score."
            ) from None
        except (ValueError, OSError) as exc:  # not CSV/Parquet, not UTF-8, unreadable
            kind = "Parquet" if self.format == "parquet" else "CSV"
            raise BatchInputError(f"Cannot read {kind} file {str(first)!r}: {exc}") from None

    def total_rows(self) -> int | None:
        """Row count from Parquet footers; None for CSV, which would need a full read."""
        if self.format != "parquet":
            return None
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.paths)

    def fingerprint(self) -> str:
        """sha256 over each file's name, size and content (head and tail of big files)."""
        h = hashlib.sha256()
        for path in self.paths:
            size = path.stat().st_size
            name = path.relative_to(self._root) if self._root else path.name
            h.update(f"{name}\0{size}\0".encode())
            with open(path, "rb") as fh:
                if size <= FULL_HASH_LIMIT:
                    while block := fh.read(1 << 20):
                        h.update(block)
                else:
                    h.update(fh.read(_SAMPLE))
                    fh.seek(size - _SAMPLE)
                    h.update(fh.read(_SAMPLE))
        return h.hexdigest()

    def chunks(
        self, chunk_size: int, contract: Contract, key_column: str | None
    ) -> Iterator[Chunk]:
        """The input in chunks of ``chunk_size`` rows, only the columns scoring needs."""
        columns = needed_columns(contract, key_column)
        index = first_row = 0
        for path in self.paths:
            frames = (
                _parquet_frames(path, chunk_size, columns)
                if self.format == "parquet"
                else _csv_frames(path, chunk_size, columns, contract, key_column)
            )
            for frame in frames:
                yield Chunk(index, first_row, frame)
                index += 1
                first_row += len(frame)


class QuerySource:
    """The rows of a SQL query run read-only against the configured database."""

    def __init__(self, store: Store, query: str) -> None:
        self.store = store
        self.query = query.strip().rstrip(";")
        if not self.query:
            raise BatchInputError("--query is empty; give a SELECT statement.")
        self._sql = ReadOnlyQuery(store, self.query)
        self._count: int | None = None

    def describe(self) -> dict[str, Any]:
        """What the run records as its source."""
        return {"kind": "query", "query": self.query}

    def columns(self) -> list[str]:
        """Column names the query returns."""
        return self._sql.columns()

    def total_rows(self) -> int | None:
        """Rows the query returns now."""
        if self._count is None:
            self._count = self._sql.count()
        return self._count

    def fingerprint(self) -> str:
        """sha256 of the query text and its row count: a rerun on changed rows is refused.

        Only as strong as that: give the query an ORDER BY so a resumed run reads the rows in
        the same order.
        """
        return hashlib.sha256(f"{self.query}\0{self.total_rows()}".encode()).hexdigest()

    def chunks(
        self, chunk_size: int, contract: Contract, key_column: str | None
    ) -> Iterator[Chunk]:
        """The query's rows in chunks, fetched from a server-side cursor."""
        first_row = 0
        for index, (names, rows) in enumerate(self._sql.batches(chunk_size)):
            frame = pd.DataFrame.from_records(rows, columns=names)
            frame = conform(frame, contract, key_column)
            yield Chunk(index, first_row, frame)
            first_row += len(frame)


Source = FileSource | QuerySource


def open_source(input: str | Path | None, query: str | None, store: Store) -> Source:
    """The source an INPUT argument or a ``--query`` names (exactly one of them)."""
    if (input is None) == (query is None):
        raise BatchInputError(
            "Give either an INPUT (file, directory or glob) or --query, not both."
        )
    if query is not None:
        return QuerySource(store, query)
    assert input is not None
    return FileSource(input)


def resolve_paths(spec: str) -> list[Path]:
    """The files a path, a directory (searched recursively) or a glob names, sorted."""
    path = Path(spec)
    if path.is_dir():
        found = [
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            and _suffix_format(p) is not None
        ]
        if not found:
            raise BatchInputError(
                f"Directory {spec!r} holds no .parquet or .csv files (hidden and _ files are "
                "skipped)."
            )
        return sorted(found)
    if any(ch in spec for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise BatchInputError(f"No input files match {spec!r}.")
        return found
    if not path.exists():
        raise BatchInputError(f"Input {spec!r} does not exist.")
    return [path]


def file_format(path: Path) -> Format:
    """Parquet or CSV, from the file name."""
    fmt = _suffix_format(path)
    if fmt is None:
        raise BatchInputError(
            f"Cannot tell the format of {str(path)!r}: name it .parquet, .pq or .csv "
            f"(optionally compressed: .csv{', .csv'.join(_COMPRESSED)})."
        )
    return fmt


def _suffix_format(path: Path) -> Format | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def needed_columns(contract: Contract, key_column: str | None) -> list[str]:
    """The contract's fields, then the key column when it is not one of them."""
    names = list(contract.names)
    if key_column is not None and key_column not in names:
        names.append(key_column)
    return names


def check_columns(
    available: Sequence[str], contract: Contract, key_column: str | None, where: str
) -> None:
    """Refuse an input that lacks a column scoring needs, naming all of them."""
    missing = [c for c in needed_columns(contract, key_column) if c not in set(available)]
    if missing:
        what = ", ".join(repr(c) for c in missing)
        raise BatchInputError(
            f"{where} lacks column(s) {what} needed to score it (the model takes "
            f"{', '.join(contract.names)}"
            + (f"; the key column is {key_column!r}" if key_column else "")
            + ")."
        )


@dataclass(frozen=True)
class ParquetRange:
    """Rows ``start .. stop - 1`` of one Parquet file: chunk ``index`` of the input."""

    path: str
    start: int
    stop: int
    index: int
    first_row: int
    columns: tuple[str, ...]

    def read(self) -> pd.DataFrame:
        """Read only the row groups that hold the range, then cut it out."""
        reader = pq.ParquetFile(self.path)
        meta = reader.metadata
        groups, offset, at = [], None, 0
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            if at < self.stop and at + rows > self.start:
                groups.append(g)
                offset = at if offset is None else offset
            at += rows
        table = reader.read_row_groups(groups, columns=list(self.columns))
        return table.slice(self.start - (offset or 0), self.stop - self.start).to_pandas()


def parquet_ranges(
    paths: Sequence[Path], chunk_size: int, columns: Sequence[str]
) -> list[ParquetRange]:
    """The local engine's chunks of Parquet files, as ranges a Dask worker can read alone."""
    out: list[ParquetRange] = []
    first_row = 0
    for path in paths:
        rows = pq.ParquetFile(path).metadata.num_rows
        for start in range(0, rows, chunk_size):
            stop = min(start + chunk_size, rows)
            out.append(ParquetRange(str(path), start, stop, len(out), first_row, tuple(columns)))
            first_row += stop - start
    return out


def _parquet_frames(path: Path, chunk_size: int, columns: list[str]) -> Iterator[pd.DataFrame]:
    # pre_buffer would keep every row group it read until the file is closed: memory would
    # grow with the file instead of staying one row group.
    reader = pq.ParquetFile(path, pre_buffer=False)
    missing = [c for c in columns if c not in reader.schema_arrow.names]
    if missing:
        raise BatchInputError(f"Parquet file {str(path)!r} lacks column(s) {missing}.")
    for table in _rechunk(reader.iter_batches(batch_size=chunk_size, columns=columns), chunk_size):
        yield table.to_pandas()


def _rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Exactly ``size`` rows per table (the last may be short), whatever the reader yields."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _csv_frames(
    path: Path, chunk_size: int, columns: list[str], contract: Contract, key_column: str | None
) -> Iterator[pd.DataFrame]:
    # Text columns stay text: a key like "007" or a category like "02134" must not turn into
    # a number on the way in.
    text = {s.name: "str" for s in contract.fields if s.kind == "category" and _text_only(s)}
    if key_column is not None:
        text[key_column] = "str"
    try:
        reader = pd.read_csv(path, usecols=columns, dtype=text, chunksize=chunk_size)
    except ValueError as exc:
        raise BatchInputError(f"Cannot read CSV file {str(path)!r}: {exc}") from None
    with reader:
        for frame in reader:
            yield conform(frame[columns], contract, key_column)


def _text_only(spec: Any) -> bool:
    return spec.categories is None or all(isinstance(c, str) for c in spec.categories)


def conform(frame: pd.DataFrame, contract: Contract, key_column: str | None) -> pd.DataFrame:
    """Turn numeric text (CSV, or database NUMERIC values) into numbers, field by field.

    A value that is not a number is kept as it was read, so validation rejects that one row
    and names the value, instead of the whole column turning into strings.
    """
    for spec in contract.fields:
        if spec.kind not in ("number", "integer") or spec.name not in frame:
            continue
        col = frame[spec.name]
        # Booleans stay booleans: the contract refuses them as numbers.
        if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            continue
        numbers = pd.to_numeric(col, errors="coerce").astype("float64")
        unreadable = numbers.isna().to_numpy() & col.notna().to_numpy()
        if unreadable.any():
            values = numbers.to_numpy(dtype=object)
            values[unreadable] = col.to_numpy(dtype=object)[unreadable]
            frame[spec.name] = pd.Series(values, index=frame.index, dtype=object)
        else:
            frame[spec.name] = numbers
    return frame
