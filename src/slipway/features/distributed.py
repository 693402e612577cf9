"""``training_frame`` on Dask: the same definitions and engine, partitioned by entity.

Rows and events are both hash-partitioned by entity key into as many partitions as the input
has, so every row finds all of its entity's events in its own partition; each partition pair
is computed by the pandas path (:func:`~slipway.features.offline.compute_frame`) on a worker,
and the result is put back in input order. Inputs and events never have to fit one machine,
only one partition of each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from slipway.exceptions import FeatureDefinitionError, MissingDependency
from slipway.features.definitions import Definitions
from slipway.features.engine import entity_text
from slipway.features.sources import frame_events, needed_columns, parquet_paths, read_source
from slipway.store import Store

_ROW, _BUCKET = "_slipway_row", "_slipway_bucket"


def dask_training_frame(
    entities: Any,
    defs: Definitions,
    at: str,
    *,
    store: Store | None = None,
    events: dict[str, Any] | None = None,
) -> Any:
    """:func:`~slipway.features.training_frame` for a Dask DataFrame (lazy; rows in order)."""
    try:
        import dask.dataframe as dd
    except ImportError:
        raise MissingDependency("dask", "dask", "training_frame on a Dask DataFrame") from None
    from slipway.features.offline import check_input

    check_input(defs, [str(c) for c in entities.columns], at)
    if len(defs.entities) != 1:
        raise FeatureDefinitionError(
            f"On Dask, features must share one entity key; these use {defs.entities}. Compute "
            "each entity's features separately and join them."
        )
    key = defs.entities[0]
    parts = entities.npartitions
    lengths = entities.map_partitions(len).compute().tolist()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    rows = dd.from_delayed(
        [
            _numbered(part, offset, key, parts)
            for part, offset in zip(entities.to_delayed(), offsets, strict=True)
        ],
        meta=_with_extra(entities._meta, key),
    )
    rows = rows.shuffle(on=_BUCKET, npartitions=parts)
    sources = []
    for name, source in defs.sources.items():
        columns = needed_columns(defs, name)
        wanted = [source.entity, source.timestamp, *columns]
        given = (events or {}).get(name)
        if given is not None and hasattr(given, "npartitions"):
            frame = given[wanted]
        elif given is not None:
            frame = dd.from_pandas(given[wanted], npartitions=parts)
        elif source.kind == "parquet":
            assert source.path is not None
            frame = dd.read_parquet(parquet_paths(source.path), columns=wanted)
        else:  # a DataFrame, the store or a table: read here, spread by entity
            ev = read_source(source, columns, store)
            frame = dd.from_pandas(
                pd.DataFrame({source.entity: ev.entity, source.timestamp: ev.ts,
                              **{c: ev.columns[c] for c in columns}}),
                npartitions=parts,
            )  # fmt: skip
        frame = frame.map_partitions(_bucketed, source.entity, parts)
        sources.append((name, frame.shuffle(on=_BUCKET, npartitions=parts)))
    meta = _with_extra(entities._meta, key)
    for name in defs.names:
        meta[name] = pd.Series(dtype=_dtype(defs, name))
    computed = dd.map_partitions(
        _compute,
        rows,
        *[frame for _, frame in sources],
        defs=defs,
        at=at,
        names=[name for name, _ in sources],
        meta=meta,
        align_dataframes=False,
    )
    return computed.set_index(_ROW, sorted=False).drop(columns=[_BUCKET])


def _numbered(part: Any, offset: int, key: str, parts: int) -> Any:
    from dask import delayed

    return delayed(_number)(part, offset, key, parts)


def _number(frame: pd.DataFrame, offset: int, key: str, parts: int) -> pd.DataFrame:
    out = frame.copy()
    out[_ROW] = np.arange(offset, offset + len(frame), dtype=np.int64)
    out[_BUCKET] = _buckets(out[key], parts)
    return out


def _bucketed(frame: pd.DataFrame, key: str, parts: int) -> pd.DataFrame:
    out = frame.copy()
    out[_BUCKET] = _buckets(out[key], parts)
    return out


def _buckets(keys: pd.Series, parts: int) -> np.ndarray:
    """The partition of each entity key (its text, hashed: the same for rows and events)."""
    text = pd.Series(entity_text(keys.to_numpy()), dtype=object)
    hashed = pd.util.hash_pandas_object(text, index=False).to_numpy()
    return (hashed % np.uint64(parts)).astype(np.int64)


def _compute(
    rows: pd.DataFrame, *frames: pd.DataFrame, defs: Definitions, at: str, names: list[str]
) -> pd.DataFrame:
    from slipway.features.offline import compute_frame

    events = {}
    for name, frame in zip(names, frames, strict=True):
        source = defs.sources[name]
        events[name] = frame_events(frame, source, needed_columns(defs, name))
    return compute_frame(rows, defs, at, events)


def _with_extra(meta: pd.DataFrame, key: str) -> pd.DataFrame:
    out = meta.copy()
    out[_ROW] = pd.Series(dtype="int64")
    out[_BUCKET] = pd.Series(dtype="int64")
    return out


def _dtype(defs: Definitions, name: str) -> Any:
    for b in defs.aggregates:
        if b.name == name:
            return object if b.agg.dtype == "str" else b.agg.dtype
    for r in defs.row_features:
        if r.name == name:
            return object if r.dtype == "str" else r.dtype
    return "float64"
