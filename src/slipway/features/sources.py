"""Reading event sources into :class:`~slipway.features.engine.Events`, and events into rows.

Offline, a source is read where it lives (a DataFrame, Parquet files, the store's events, a
table of yours); online, always from the store's events table, which ``slipway features
ingest``, ``POST /v1/events``, recorded requests and ``slipway features materialize`` fill.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from slipway.exceptions import FeatureDefinitionError
from slipway.features.definitions import Definitions, EventSource
from slipway.features.engine import Events, entity_text, times_us
from slipway.store import Store
from slipway.store import features as sql

_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def needed_columns(defs: Definitions, source: str) -> list[str]:
    """The event columns the aggregates of one source read (values and filters)."""
    out: list[str] = []
    for b in defs.aggregates:
        if b.agg.source.name != source:
            continue
        for c in [b.agg.column, *b.agg.where]:
            if c is not None and c not in out:
                out.append(c)
    return out


def read_source(source: EventSource, columns: Sequence[str], store: Store | None = None) -> Events:
    """Every event of a source, with the given value columns, as the offline engine takes them."""
    wanted = [source.entity, source.timestamp, *columns]
    if source.kind == "frame":
        assert source.frame is not None
        return frame_events(source.frame, source, columns)
    if source.kind == "parquet":
        assert source.path is not None
        paths = parquet_paths(source.path)
        try:
            frame = pd.concat([pd.read_parquet(p, columns=wanted) for p in paths])
        except (KeyError, ValueError) as exc:
            raise FeatureDefinitionError(
                f"Event source {source.name!r}: cannot read {wanted} from {source.path}: {exc}"
            ) from None
        return frame_events(frame, source, columns)
    if store is None:
        raise FeatureDefinitionError(
            f"Event source {source.name!r} lives in the store; pass store=... (or set "
            "SLIPWAY_HOME / SLIPWAY_DATABASE_URL)."
        )
    if source.kind == "table":
        assert source.table is not None
        try:
            rows = sql.read_table(store, source.table, wanted)
        except (KeyError, Exception) as exc:
            raise FeatureDefinitionError(
                f"Event source {source.name!r}: cannot read {wanted} from table "
                f"{source.table!r}: {exc}"
            ) from None
        frame = pd.DataFrame(rows, columns=wanted)
        return frame_events(frame, source, columns)
    ents, stamps, _, payloads = sql.read_events(store, source.name)
    return payload_events(ents, stamps, payloads, columns)


def frame_events(frame: pd.DataFrame, source: EventSource, columns: Sequence[str]) -> Events:
    """Events from a DataFrame with the source's entity and timestamp columns."""
    missing = [c for c in (source.entity, source.timestamp, *columns) if c not in frame.columns]
    if missing:
        raise FeatureDefinitionError(
            f"Event source {source.name!r} has no column(s) {missing} (it has "
            f"{list(map(str, frame.columns))[:12]})."
        )
    entity = frame[source.entity].to_numpy()
    ts = times_us(frame[source.timestamp], f"{source.name}.{source.timestamp}")
    return Events(entity, ts, {c: _column(frame[c]) for c in columns})


def payload_events(
    entities: Sequence[str], stamps: Sequence[int], payloads: Sequence[str], columns: Sequence[str]
) -> Events:
    """Events from stored rows (JSON payloads), with the given value columns."""
    records = orjson.loads("[" + ",".join(payloads) + "]") if payloads else []
    cols = {c: values_array([r.get(c) for r in records]) for c in columns}
    return Events(np.asarray(entities, dtype=object), np.asarray(stamps, dtype=np.int64), cols)


def values_array(values: list[Any]) -> np.ndarray:
    """JSON values as float64 (numbers and nulls) or object (anything else)."""
    if all(type(v) in (int, float) or v is None for v in values):
        return np.array(values, dtype=np.float64)
    return np.array(values, dtype=object)


def _column(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=object)
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def parquet_paths(path: str) -> list[str]:
    """The Parquet files of a path, directory or glob, sorted; an error when there are none."""
    p = Path(path)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*.parquet"))
    elif any(ch in path for ch in "*?["):
        found = sorted(glob.glob(path, recursive=True))
    else:
        found = [path] if p.exists() else []
    if not found:
        raise FeatureDefinitionError(f"No Parquet files match {path!r}.")
    return found


def event_rows(frame: pd.DataFrame, source: EventSource) -> list[sql.EventRow]:
    """Stored rows for a frame of events: the id column (or a hash of the event) as id.

    Without an id column the id is a hash of the entity, time and values, so ingesting the
    same file twice adds nothing.
    """
    for col in (source.entity, source.timestamp):
        if col not in frame.columns:
            raise FeatureDefinitionError(
                f"Events for source {source.name!r} need column {col!r} (they have "
                f"{list(map(str, frame.columns))[:12]})."
            )
    entity = entity_text(frame[source.entity].to_numpy())
    if any(e is None for e in entity):
        raise FeatureDefinitionError(
            f"Events for source {source.name!r} have a null {source.entity!r}; every event needs "
            "an entity key."
        )
    ts = times_us(frame[source.timestamp], source.timestamp)
    skip = {source.entity, source.timestamp}
    ids = None
    if source.id is not None and source.id in frame.columns:
        ids = entity_text(frame[source.id].to_numpy())
        skip.add(source.id)
    rest = frame[[c for c in frame.columns if c not in skip]]
    payloads = [orjson.dumps(r, option=_JSON, default=_default).decode() for r in _records(rest)]
    out = []
    for i, (e, t, p) in enumerate(zip(entity, ts.tolist(), payloads, strict=True)):
        if ids is not None and ids[i] is not None:
            event_id = str(ids[i])
        else:
            event_id = hashlib.sha1(
                f"{e}\x00{t}\x00{p}".encode(), usedforsecurity=False
            ).hexdigest()
        out.append(sql.EventRow(event_id, str(e), int(t), p))
    return out


def _records(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    columns = [str(c) for c in frame.columns]
    arrays = []
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            arrays.append([None if pd.isna(v) else v.isoformat() for v in s])
        else:
            arrays.append(s.astype(object).where(s.notna(), None).tolist())
    if not arrays:
        yield from ({} for _ in range(len(frame)))
        return
    for values in zip(*arrays, strict=True):
        yield dict(zip(columns, values, strict=True))


def _default(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
