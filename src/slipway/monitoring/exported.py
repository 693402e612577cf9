"""The prediction log outside the database: exported to Parquet, CSV or JSON lines, and read back
by the monitor, on this machine or on a Dask cluster.

An export holds one row per prediction with the columns ``prediction_id``, ``created_at``
(UTC), ``version``, ``variant``, ``experiment``, ``unit_id``, ``latency_ms``, one column per
input field of the model (named as the field; ``input:<field>`` for a field whose name is one
of these), ``label`` and ``proba:<class>`` (classifiers) or ``value`` (regressors), and the
ground truth where it arrived: ``feedback`` (the label as text), ``feedback_value``
(regressors) and ``feedback_at``. Numbers are float64; categories, booleans and predicted
labels are the text the monitor compares (``str(value)``), so a run over an export gives
exactly the report a run over the log gives.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from slipway.exceptions import ConfigError, MissingDependency
from slipway.monitoring.log import INPUT, TIME, LogSchema, read_log
from slipway.monitoring.sources import _FromTables
from slipway.monitoring.traffic import read_violations
from slipway.store import Store

FORMATS = ("parquet", "csv", "json")
_FIXED = frozenset(
    {"prediction_id", TIME, "version", "variant", "experiment", "unit_id", "latency_ms"}
    | {"label", "value", "feedback", "feedback_value", "feedback_at"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def column_name(field: str) -> str:
    """The export's column for an input field: its own name unless that is taken."""
    taken = field in _FIXED or field.startswith(("proba:", INPUT))
    return f"{INPUT}{field}" if taken else field


def to_export(table: pa.Table, schema: LogSchema) -> pa.Table:
    """A table of :meth:`LogSchema.columns` as the export writes it."""
    names = {INPUT + f: column_name(f) for f in schema.names}
    out = table.rename_columns([names.get(c, c) for c in table.column_names])
    for name in (TIME, "feedback_at"):
        if name in out.column_names:
            i = out.column_names.index(name)
            out = out.set_column(i, name, out[name].cast(pa.timestamp("us", tz="UTC")))
    return out


def from_export(table: pa.Table, schema: LogSchema) -> pa.Table:
    """An exported table back in the columns the monitor reads."""
    names = {column_name(f): INPUT + f for f in schema.names}
    out = table.rename_columns([names.get(c, c) for c in table.column_names])
    for name in (TIME, "feedback_at"):
        if name in out.column_names:
            i = out.column_names.index(name)
            out = out.set_column(i, name, out[name].cast(pa.timestamp("us")))
    return out


def export_log(
    store: Store,
    schema: LogSchema,
    model: str,
    *,
    fmt: str = "parquet",
    out: Path | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """Write the log of ``model`` in [start, end) to ``out`` (stdout for csv and json when
    None), oldest first, a block at a time; the number of predictions written."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: use parquet, csv or json.")
    if fmt == "parquet" and out is None:
        raise ConfigError("A Parquet export needs --out PATH (a .parquet file).")
    tables = read_log(
        store,
        schema,
        model,
        start or _EPOCH,
        end or datetime.now(UTC),
        labels=None,
        details=True,
    )
    target = schema.columns(labels=True, details=True)
    empty = to_export(target.empty_table(), schema)
    rows = 0
    with _Writer(fmt, out, empty.schema) as writer:
        for table in tables:
            writer.write(to_export(table, schema))
            rows += table.num_rows
    return rows


class _Writer:
    def __init__(self, fmt: str, out: Path | None, schema: pa.Schema) -> None:
        self.fmt, self.schema = fmt, schema
        self.file: IO[bytes] = sys.stdout.buffer if out is None else open(out, "wb")  # noqa: SIM115
        self.owned = out is not None
        self.writer: Any = None
        if fmt == "parquet":
            self.writer = pq.ParquetWriter(self.file, schema)
        elif fmt == "csv":
            self.writer = pcsv.CSVWriter(self.file, schema)

    def write(self, table: pa.Table) -> None:
        if self.fmt == "json":
            for record in table.to_pylist():
                self.file.write(json.dumps(record, default=_iso).encode() + b"\n")
            return
        self.writer.write_table(table)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.owned:
            self.file.close()
        else:
            self.file.flush()


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


@dataclass
class ExportedLog(_FromTables):
    """A log exported to Parquet (a file or a directory of files), read with pyarrow on this
    machine or, with ``engine="dask"``, by the workers of a Dask cluster (``scheduler``; a
    local one when None), which read, filter and encode their partitions; refusals come from
    the store."""

    path: Path
    store: Store
    engine: str = "local"
    scheduler: str | None = None

    def tables(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labels: bool
    ) -> Iterator[pa.Table]:
        """The export's rows in [start, end) (labeled ones only when ``labels``)."""
        if not self.path.exists():
            raise ConfigError(f"--source {str(self.path)!r} does not exist.")
        columns = [c for c in schema.columns(labels=labels, details=False).names]
        wanted = [_exported(c, schema) for c in columns]
        if self.engine == "dask":
            yield from _dask_tables(self, schema, wanted, start, end, labels)
            return
        dataset = ds.dataset(self.path, format="parquet")
        for batch in dataset.to_batches(columns=wanted, filter=_filter(start, end, labels)):
            yield from_export(pa.Table.from_batches([batch]), schema)

    def refusals(self, model: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Requests refused for breaking the contract, from the store."""
        return read_violations(self.store, model, start, end)


def _exported(column: str, schema: LogSchema) -> str:
    return column_name(column[len(INPUT) :]) if column.startswith(INPUT) else column


def _filter(start: datetime, end: datetime, labels: bool) -> ds.Expression:
    utc = pa.timestamp("us", tz="UTC")
    lo, hi = pa.scalar(start.astimezone(UTC), utc), pa.scalar(end.astimezone(UTC), utc)
    expression = (ds.field(TIME) >= lo) & (ds.field(TIME) < hi)
    return expression & ds.field("feedback_at").is_valid() if labels else expression


def _dask_tables(
    source: ExportedLog,
    schema: LogSchema,
    wanted: list[str],
    start: datetime,
    end: datetime,
    labels: bool,
) -> Iterator[pa.Table]:
    try:
        import dask
        import distributed
    except ImportError:
        raise MissingDependency("dask and distributed", "dask", "Monitoring on Dask") from None
    files = sorted(source.path.glob("*.parquet")) if source.path.is_dir() else [source.path]
    pieces = [(str(f), group) for f in files for group in range(pq.ParquetFile(f).num_row_groups)]
    tasks = [
        dask.delayed(_read_piece)(path, group, wanted, start, end, labels) for path, group in pieces
    ]
    client = distributed.Client(source.scheduler) if source.scheduler else None
    try:
        results = client.gather(client.compute(tasks)) if client else dask.compute(*tasks)
    finally:
        if client is not None:
            client.close()
    for result in results:
        yield from_export(pa.ipc.open_stream(io.BytesIO(result)).read_all(), schema)


def _read_piece(
    path: str, group: int, wanted: list[str], start: datetime, end: datetime, labels: bool
) -> bytes:
    """On a worker: one row group's rows in [start, end) (labeled ones only when ``labels``),
    texts dictionary-encoded, as an Arrow stream: only compact columns travel to the client."""
    table = pq.ParquetFile(path).read_row_group(group, columns=wanted)
    table = table.filter(_filter(start, end, labels))
    columns = {}
    for name in table.column_names:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = column.cast(pa.string()).combine_chunks().dictionary_encode()
        columns[name] = column
    table = pa.table(columns)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def newest(
    store: Store, schema: LogSchema, model: str, count: int, *, start: datetime | None = None
) -> list[dict[str, Any]]:
    """The newest ``count`` predictions of ``model`` (since ``start``), newest first, as
    records with the export's columns."""
    tables = read_log(
        store,
        schema,
        model,
        start or _EPOCH,
        datetime.now(UTC) + _AHEAD,
        labels=None,
        details=True,
        newest=count,
    )
    return [r for t in tables for r in to_export(t, schema).to_pylist()]


def follow(
    store: Store,
    schema: LogSchema,
    model: str,
    *,
    lines: int = 10,
    interval: float = 2.0,
    sleep: Any = None,
    polls: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The last ``lines`` predictions of ``model``, oldest first, then each new one as it is
    logged, polling every ``interval`` seconds (``polls`` times, or until stopped)."""
    import time

    pause = sleep or time.sleep
    shown = list(reversed(newest(store, schema, model, lines)))
    yield from shown
    last = shown[-1][TIME] if shown else datetime.now(UTC)
    seen = {r["prediction_id"] for r in shown if r[TIME] == last}
    done = 0
    while polls is None or done < polls:
        pause(interval)
        done += 1
        tables = read_log(
            store, schema, model, last, datetime.now(UTC) + _AHEAD, labels=None, details=True
        )
        for table in tables:
            for record in to_export(table, schema).to_pylist():
                if record[TIME] == last and record["prediction_id"] in seen:
                    continue
                if record[TIME] != last:
                    last, seen = record[TIME], set()
                seen.add(record["prediction_id"])
                yield record


_AHEAD = pd.Timedelta(minutes=5).to_pytimedelta()  # clocks of several servers differ a little
