"""Events into the store: ingest a frame or file, and materialize sources kept elsewhere.

Serving reads features from the store's events table. :func:`ingest` adds events (idempotent
by event id) from a DataFrame, CSV or Parquet file; :func:`materialize` copies the events of
sources defined on Parquet files or a table of yours into it, only those newer than what an
earlier run copied, so a scheduled ``slipway features materialize`` keeps serving fresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from slipway.exceptions import FeatureDefinitionError
from slipway.features.definitions import EventSource
from slipway.features.sources import event_rows, parquet_paths
from slipway.store import Store
from slipway.store import features as sql

_BATCH = 50_000


@dataclass(frozen=True)
class Ingested:
    """How many events were read, and how many of them were new (the rest: known ids)."""

    source: str
    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        """Events whose id was already stored."""
        return self.received - self.inserted

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (the ``POST /v1/events`` answer)."""
        return {"source": self.source, "received": self.received, "inserted": self.inserted,
                "duplicates": self.duplicates}  # fmt: skip


def source_of(store: Store, name: str) -> EventSource:
    """The source recorded under ``name`` (by a registration or an earlier ingest)."""
    return recorded_source(store, name)[0]


def recorded_source(store: Store, name: str) -> tuple[EventSource, tuple[str, ...]]:
    """:func:`source_of`, and the columns a registered aggregate reads as numbers (see
    :func:`numeric_columns`), from one read of the record."""
    found = sql.get_source(store, name)
    if found is None:
        known = ", ".join(s.name for s in sql.list_sources(store)) or "none yet"
        raise FeatureDefinitionError(
            f"No event source named {name!r} (known: {known}). Sources are recorded when a "
            "model with features is registered, or name the columns: --entity and --timestamp."
        )
    return EventSource.from_record(found.spec), tuple(found.spec.get("numeric") or ())


def ingest(
    store: Store,
    data: pd.DataFrame | str | Path,
    source: EventSource | str,
    *,
    entity: str | None = None,
    timestamp: str | None = None,
    id: str | None = None,
) -> Ingested:
    """Add events to the store, skipping ids already there.

    ``source`` is an EventSource or the name of a recorded one; a new name needs ``entity``
    and ``timestamp``. ``data`` is a DataFrame or a CSV/Parquet file (or glob).
    """
    src = _resolve(store, source, entity, timestamp, id)
    numeric = numeric_columns(store, src.name)
    received = inserted = 0
    for frame in _frames(data):
        check_numbers(frame, numeric, src.name)
        rows = event_rows(frame, src)
        for start in range(0, len(rows), _BATCH):
            part = rows[start : start + _BATCH]
            inserted += sql.add_events(store, src.name, part)
            received += len(part)
    return Ingested(src.name, received, inserted)


def numeric_columns(store: Store, name: str) -> tuple[str, ...]:
    """The columns of a recorded source that a registered aggregate reads as numbers (sum,
    mean, min, max): events must hold numbers or nulls there."""
    found = sql.get_source(store, name)
    return tuple(found.spec.get("numeric") or ()) if found is not None else ()


def is_number(value: Any) -> bool:
    """A JSON number or null (``True`` is no number, nor is a numeric string)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def check_numbers(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raise FeatureDefinitionError when a column read as numbers holds anything else: one
    stored text value would fail every later computation of that entity's features."""
    for name in columns:
        if name not in frame.columns:
            continue
        dtype = frame[name].dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            continue
        values = frame[name].to_numpy(dtype=object)
        bad = [v for v in values.tolist() if not is_number(v) and not _missing(v)]
        if bad:
            raise FeatureDefinitionError(
                f"Column {name!r} of events of {source!r} must hold numbers (an aggregate takes "
                f"its sum, mean, min or max); it holds {bad[0]!r} ({len(bad):,} such values)."
            )


def _missing(value: Any) -> bool:
    return value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def ingest_records(
    store: Store, source: EventSource | str, records: Sequence[Mapping[str, Any]]
) -> Ingested:
    """:func:`ingest` for JSON records (``POST /v1/events``); one transaction."""
    src = _resolve(store, source, None, None, None)
    rows = event_rows(pd.DataFrame.from_records(list(records)), src)
    return Ingested(src.name, len(rows), sql.add_events(store, src.name, rows))


def materialize(store: Store, sources: Sequence[EventSource]) -> list[Ingested]:
    """Copy the new events of Parquet- and table-backed sources into the store.

    A source's newest copied time is remembered; events at or after it are read again (ids
    make that idempotent), so late files with old times are the only thing it can miss: run
    with a fresh store or ``ingest`` them.
    """
    out = []
    for src in sources:
        if src.kind == "store" or src.kind == "frame":
            continue
        sql.save_source(store, src.to_record())
        recorded = sql.get_source(store, src.name)
        state = recorded.materialized if recorded is not None else {}
        since = state.get("newest_ts")
        frame = _read_all(store, src)
        if since is not None and len(frame):
            from slipway.features.engine import times_us

            frame = frame[times_us(frame[src.timestamp], src.timestamp) >= int(since)]
        result = ingest(store, frame, src)
        _, newest, _ = sql.event_stats(store, src.name)
        sql.set_materialized(store, src.name, {"newest_ts": newest, "events": result.received})
        out.append(result)
    return out


def _read_all(store: Store, src: EventSource) -> pd.DataFrame:
    if src.kind == "parquet":
        assert src.path is not None
        return pd.concat([pd.read_parquet(p) for p in parquet_paths(src.path)])
    assert src.table is not None
    columns = sql.table_columns(store, src.table)
    return pd.DataFrame(sql.read_table(store, src.table, columns), columns=columns)


def _resolve(
    store: Store,
    source: EventSource | str,
    entity: str | None,
    timestamp: str | None,
    id: str | None,
) -> EventSource:
    if isinstance(source, EventSource):
        sql.save_source(store, source.to_record())
        return source
    if entity and timestamp:
        src = EventSource(source, entity, timestamp, id=id)
        sql.save_source(store, src.to_record())
        return src
    return source_of(store, source)


def _frames(data: pd.DataFrame | str | Path) -> list[pd.DataFrame]:
    if isinstance(data, pd.DataFrame):
        return [data]
    path = str(data)
    if path.endswith(".csv"):
        if not Path(path).exists():
            raise FeatureDefinitionError(f"No file {path!r}.")
        return [pd.read_csv(path)]
    return [pd.read_parquet(p) for p in parquet_paths(path)]
