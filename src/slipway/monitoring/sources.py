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
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa

from slipway.exceptions import ConfigError
from slipway.monitoring.log import LogSchema, read_log
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
