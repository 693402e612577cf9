"""What a model answered and how that turned out: prediction columns for drift checks, and
realized performance per model version from the labeled predictions of a window.

The labels come joined to the log already (by prediction id, in the database: see
:func:`~slipway.monitoring.traffic.read_labeled`), in the log's order, so nothing here
matches ids; the window's traffic only gives each version's row count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from slipway.monitoring import columns as cols
from slipway.monitoring.columns import Column
from slipway.monitoring.performance import classification_performance, regression_performance
from slipway.monitoring.policy import Policy
from slipway.monitoring.traffic import Traffic
from slipway.predict import Predictions
from slipway.versions import ModelVersion


def class_keys(mv: ModelVersion) -> list[str]:
    """The version's classes as the text keys the log and reference predictions use."""
    return [str(c) for c in mv.classes or []]


def prediction_columns(source: Traffic | pd.DataFrame, mv: ModelVersion) -> dict[str, Column]:
    """The outputs drift is checked on: predicted classes and the positive-class score (or each
    class's probability for multiclass), or predicted values.

    ``source`` is the version's reference predictions (``label``, ``proba:<class>``,
    ``value`` columns) or logged traffic.
    """
    if mv.task == "regression":
        values = source["value"] if isinstance(source, pd.DataFrame) else source.values()
        return {"value": cols.numeric(values)}
    keys = class_keys(mv)
    out: dict[str, Column] = {}
    names = [Predictions.proba_column(k) for k in keys]
    if isinstance(source, pd.DataFrame):
        out["label"] = cols.categorical(source["label"].astype(object).map(str))
        frame = source
    else:
        out["label"] = cols.categorical(source.label_series())
        frame = source.outputs
    shown = names[1:] if len(keys) == 2 else names
    if len(keys) >= 2 and len(frame) == 0:  # an empty window: each score is empty, not missing
        out.update({name: cols.numeric(np.empty(0)) for name in shown})
    elif len(keys) >= 2 and all(n in frame for n in names):
        for name in shown:  # a column at a time: at volume, no copy of every probability
            out[name] = cols.numeric(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))
    return out


def performance_by_version(
    current: Traffic,
    labeled: Traffic,
    version_of: Callable[[int], ModelVersion | None],
    policy: Policy,
) -> list[dict[str, Any]]:
    """Per version served in the window: label coverage and delay, metrics with intervals.

    ``current`` is the window's traffic, ``labeled`` its labeled predictions (with feedback).
    """
    out = []
    served, rows = np.unique(current.versions, return_counts=True)
    for version, n in zip(served.tolist(), rows.tolist(), strict=True):
        mv = version_of(version)
        if mv is None:
            continue
        part = labeled.where(labeled.versions == version)
        out.append(_one_version(int(n), part, mv, policy))
    return out


def _one_version(rows: int, labeled: Traffic, mv: ModelVersion, policy: Policy) -> dict[str, Any]:
    n_labeled = len(labeled)
    entry: dict[str, Any] = {
        "version": mv.version,
        "rows": rows,
        "labeled": n_labeled,
        "coverage": n_labeled / rows if rows else 0.0,
        "delay_seconds": None,
        "unknown_labels": 0,
        "status": "ok",
        "metrics": {},
    }
    if n_labeled == 0:
        entry["status"] = "no_labels"
        return entry
    delay = (labeled.received() - labeled.times) / np.timedelta64(1, "s")
    entry["delay_seconds"] = {
        "median": float(np.median(delay)),
        "p90": float(np.quantile(delay, 0.9)),
        "max": float(np.max(delay)),
    }
    if mv.task == "regression":
        y = labeled.truth_values()
        keep = np.isfinite(y)
        entry["unknown_labels"] = int((~keep).sum())
        entry["unknown_examples"] = _examples(labeled.truth()[~keep])
        values = labeled.values()
        y, values = y[keep], values[keep]
        if len(y) < policy.min_labels:
            entry["status"] = "insufficient_labels"
            return entry
        entry["metrics"] = regression_performance(y, values, mv.metrics, policy)
        return entry
    keys = class_keys(mv)
    y = labeled.truth()
    keep = np.isin(y, np.array(keys, dtype=object))
    entry["unknown_labels"] = int((~keep).sum())
    entry["unknown_examples"] = _examples(y[~keep])
    entry["classes"] = keys
    if int(keep.sum()) < policy.min_labels:
        entry["status"] = "insufficient_labels"
        return entry
    labels = labeled.labels()[keep]
    proba = labeled.probabilities(keys)
    if proba is not None:
        proba = proba[keep]
        if np.isnan(proba).any():
            proba = None
    entry["metrics"] = classification_performance(y[keep], labels, proba, keys, mv.metrics, policy)
    return entry


def _examples(values: np.ndarray, limit: int = 5) -> list[Any]:
    """A few distinct values, as sent, in order of first appearance (for the report)."""
    seen: dict[str, Any] = {}
    for v in values.tolist():
        seen.setdefault(repr(v), v)
        if len(seen) == limit:
            break
    return list(seen.values())
