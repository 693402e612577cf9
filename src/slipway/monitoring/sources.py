"""Where a monitoring run reads what a model answered: the prediction log (the default), an
exported copy of it in Parquet (read locally or by a Dask cluster), or batch outputs that kept
their inputs.

A source is anything with ``traffic(schema, model, start, end)`` and ``labeled(...)``
returning :class:`~slipway.monitoring.traffic.Traffic`; the ones here build it from Arrow
tables of :meth:`~slipway.monitoring.log.LogSchema.columns`, so every source gives the checks
the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slipway.exceptions import ConfigError
from slipway.monitoring.log import TIME, LogSchema, read_log
from slipway.monitoring.traffic import Traffic, from_tables, read_violations
from slipway.store import Store


class Source(Protocol):
    """What a monitoring run reads: a model's traffic, and its labeled part."""

    def traffic(self, schema: LogSchema, model: str, start: datetime, end: datetime) -> Traffic:
        """Every prediction of ``model`` in [start, end), oldest first."""
        ...

    def labeled(self, schema: LogSchema, model: str, start: datetime, end: datetime) -> Traffic:
        """The predictions of ``model`` in [start, end) that have ground truth, with it."""
        ...

    def traffic_and_labeled(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labeled_from: datetime
    ) -> tuple[Traffic, Traffic]:
        """``traffic(start, end)`` and ``labeled(labeled_from, end)``: one read where it can."""
        ...

    def refusals(self, model: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Requests refused for breaking the contract (``created_at``, ``rows``, ``problems``)."""
        ...


class _FromTables:
    """A source whose traffic is built from Arrow tables of the log's columns."""

    def tables(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labels: bool
    ) -> Iterable[pa.Table]:
        raise NotImplementedError

    def traffic(self, schema: LogSchema, model: str, start: datetime, end: datetime) -> Traffic:
        """Every prediction of ``model`` in [start, end), oldest first."""
        return from_tables(self.tables(schema, model, start, end, False), schema)

    def labeled(self, schema: LogSchema, model: str, start: datetime, end: datetime) -> Traffic:
        """The labeled predictions of ``model`` in [start, end), with their labels."""
        return from_tables(self.tables(schema, model, start, end, True), schema)

    def traffic_and_labeled(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labeled_from: datetime
    ) -> tuple[Traffic, Traffic]:
        """``traffic(start, end)`` and ``labeled(labeled_from, end)``, as two reads."""
        return (
            self.traffic(schema, model, start, end),
            self.labeled(schema, model, labeled_from, end),
        )


@dataclass
class StoreLog(_FromTables):
    """The prediction log in the store's database (what ``slipway serve`` writes)."""

    store: Store

    def tables(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labels: bool
    ) -> Iterator[pa.Table]:
        """The log's tables, streamed from the database."""
        return read_log(self.store, schema, model, start, end, labels=labels)

    def refusals(self, model: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Requests refused for breaking the contract, from the store."""
        return read_violations(self.store, model, start, end)

    def traffic_and_labeled(
        self, schema: LogSchema, model: str, start: datetime, end: datetime, labeled_from: datetime
    ) -> tuple[Traffic, Traffic]:
        """``traffic(start, end)`` and ``labeled(labeled_from, end)`` from one read of the log.

        The predictions are read once with their feedback where they have one (a LEFT JOIN
        in the database); each block's labeled rows logged from ``labeled_from`` on are set
        aside as it arrives, and the traffic keeps no feedback columns. The result equals
        the two separate reads, row for row, without scanning the log twice.
        """
        kept: list[pa.Table] = []
        since = pa.scalar(_naive(labeled_from), pa.timestamp("us"))

        def split(tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
            for table in tables:
                labeled = table.filter(
                    pc.and_(pc.is_valid(table[FEEDBACK_AT]), pc.greater_equal(table[TIME], since))
                )
                if labeled.num_rows:  # as the labeled read, which yields no empty table
                    kept.append(labeled)
                yield table.drop_columns([c for c in _FEEDBACK if c in table.column_names])

        tables = read_log(self.store, schema, model, start, end, labels=None)
        traffic = from_tables(split(tables), schema)
        return traffic, from_tables(kept, schema)


FEEDBACK_AT = "feedback_at"
_FEEDBACK = ["feedback", "feedback_value", FEEDBACK_AT]


def _naive(at: datetime) -> datetime:
    """UTC wall time without a zone, as the tables' times are."""
    return at if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)


def open_source(
    spec: str | Source,
    store: Store,
    *,
    engine: str = "local",
    scheduler: str | None = None,
) -> Source:
    """The source a ``--source`` value names: ``log``, ``batch``, ``batch:RUN_ID``, or the
    path of an exported log (``.parquet`` file or directory)."""
    if not isinstance(spec, str):
        return spec
    if engine not in ("local", "dask"):
        raise ConfigError(f"--engine must be local or dask, not {engine!r}.")
    if scheduler is not None and engine != "dask":
        raise ConfigError("--scheduler is the address of a Dask cluster: add --engine dask.")
    if spec == "log":
        if engine == "dask":
            raise ConfigError(
                "The Dask engine reads an exported log: run `slipway predictions export MODEL "
                "--format parquet --out DIR/` and give --source DIR/."
            )
        return StoreLog(store)
    if spec == "batch" or spec.startswith("batch:"):
        from slipway.monitoring.batchsource import BatchOutputs

        return BatchOutputs(store, spec.partition(":")[2] or None)
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".parquet", ".pq") or path.is_dir():
        from slipway.monitoring.exported import ExportedLog

        return ExportedLog(path, store, engine=engine, scheduler=scheduler)
    raise ConfigError(
        f"--source {spec!r}: use log (the prediction log), batch or batch:RUN_ID (batch "
        "outputs kept with their inputs), or the path of a log exported to Parquet."
    )
