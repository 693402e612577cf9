"""Offline, point-in-time correct feature computation: :func:`training_frame`.

Each row of the input frame (entity keys and a time) gets every aggregate computed from the
events strictly before its time, and then every row feature, by the engine serving uses too.
A Dask DataFrame input is partitioned by entity and computed partition by partition, for
inputs and events beyond one machine's memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from slipway.exceptions import FeatureDefinitionError
from slipway.features.definitions import Definitions, resolve
from slipway.features.engine import Events, aggregate, apply_rows, times_us
from slipway.features.sources import needed_columns, read_source
from slipway.store import Store


def training_frame(
    entities: Any,
    features: Sequence[Any] | Definitions,
    at: str,
    *,
    store: Store | None = None,
    events: dict[str, Any] | None = None,
) -> Any:
    """The input frame with one column per feature, rows in input order, no leakage.

    ``entities`` holds the entity key column(s) and the time column ``at`` (and the raw fields
    row features read). Each aggregate uses only events with ``t - window <= ts < t``: an
    event at or after a row's time never enters its features. An entity without events in a
    window gets count 0 (and sum 0) and null (or ``fillna``) for the others. ``store`` reads
    sources kept in the store (default: the one ``SLIPWAY_*`` settings point at); ``events``
    overrides sources by name with DataFrames (as the skew audit does). A Dask DataFrame input
    returns a Dask DataFrame, computed per entity partition on the cluster.
    """
    defs = resolve(features)
    if _is_dask(entities):
        from slipway.features.distributed import dask_training_frame

        return dask_training_frame(entities, defs, at, store=store, events=events)
    if not isinstance(entities, pd.DataFrame):
        raise FeatureDefinitionError(
            f"training_frame takes a pandas or Dask DataFrame, not {type(entities).__name__}."
        )
    check_input(defs, [str(c) for c in entities.columns], at)
    if store is None and _needs_store(defs, events):
        from slipway.config import Settings

        store = Store(Settings.from_env().resolved_database_url)
    loaded = {name: _events_of(defs, name, store, events) for name in defs.sources}
    return compute_frame(entities, defs, at, loaded)


def compute_frame(
    entities: pd.DataFrame, defs: Definitions, at: str, events: dict[str, Events]
) -> pd.DataFrame:
    """Features for a pandas frame given each source's events (already read)."""
    t = times_us(entities[at], at)
    # Only the columns features read (an object array of Timestamps costs seconds a million).
    wanted = {*defs.entities, *defs.raw_inputs}
    columns = {str(c): entities[c].to_numpy() for c in entities.columns if str(c) in wanted}
    computed = compute_columns(defs, columns, t, at, events)
    out = entities.copy()
    for name, values in computed.items():
        out[name] = values
    return out


def compute_columns(
    defs: Definitions,
    columns: dict[str, np.ndarray],
    t: np.ndarray,
    at: str,
    events: dict[str, Events],
    usable: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every feature for rows given as columns (``t`` their times in µs); aggregates of rows
    not ``usable`` are computed as for an unknown entity."""
    n = len(t)
    out: dict[str, np.ndarray] = {}
    for name in defs.sources:
        bounds = [b for b in defs.aggregates if b.agg.source.name == name]
        for entity in sorted({b.entity for b in bounds}):
            keys = columns[entity]
            if usable is not None:
                keys = np.where(usable, keys, np.array(None, dtype=object))
            mine = [b for b in bounds if b.entity == entity]
            out.update(aggregate(events[name], keys, t, mine))
    if defs.row_features:
        cols: dict[str, Any] = {**columns, **out, at: t}
        out.update(apply_rows(defs.row_features, cols, n, timestamps=[at]))
    return out


def check_input(defs: Definitions, columns: Sequence[str], at: str) -> None:
    """The input has the time, the entity keys and the raw fields; no feature is a column."""
    have = set(columns)
    problems = []
    if at not in have:
        problems.append(f"the time column {at!r} (at=...)")
    problems += [f"the entity key {e!r}" for e in defs.entities if e not in have]
    problems += [
        f"the field {f!r} that row feature(s) "
        f"{', '.join(r.name for r in defs.row_features if f in r.inputs)} read"
        for f in defs.raw_inputs
        if f not in have
    ]
    if problems:
        raise FeatureDefinitionError(
            f"The input frame lacks {'; '.join(problems)} (it has {sorted(have)[:12]})."
        )
    clash = [n for n in defs.names if n in have]
    if clash:
        raise FeatureDefinitionError(
            f"The input frame already has column(s) {clash} named like features; drop or "
            "rename them so computed values cannot be confused with given ones."
        )


def _events_of(
    defs: Definitions, name: str, store: Store | None, given: dict[str, Any] | None
) -> Events:
    source = defs.sources[name]
    columns = needed_columns(defs, name)
    if given and name in given:
        from slipway.features.sources import frame_events

        value = given[name]
        return value if isinstance(value, Events) else frame_events(value, source, columns)
    return read_source(source, columns, store)


def _needs_store(defs: Definitions, given: dict[str, Any] | None) -> bool:
    return any(
        s.kind in ("store", "table") and not (given and n in given) for n, s in defs.sources.items()
    )


def _is_dask(value: Any) -> bool:
    return type(value).__module__.startswith(("dask", "dask_expr"))
