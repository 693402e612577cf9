"""What a model answered and how that turned out: prediction columns for drift checks, and
realized performance per model version from feedback joined to the log by prediction id.
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
    if isinstance(source, pd.DataFrame):
        out["label"] = cols.categorical(source["label"].astype(object).map(str))
        proba = (
            source[[Predictions.proba_column(k) for k in keys]].to_numpy(dtype=float)
            if all(Predictions.proba_column(k) in source for k in keys)
            else None
        )
    else:
        out["label"] = cols.categorical(source.labels())
        proba = source.probabilities(keys)
    if proba is not None and len(keys) >= 2:
        shown = keys[1:] if len(keys) == 2 else keys
        for k in shown:
            out[Predictions.proba_column(k)] = cols.numeric(proba[:, keys.index(k)])
    return out


def performance_by_version(
    current: Traffic,
    feedback: pd.DataFrame,
    version_of: Callable[[int], ModelVersion | None],
    policy: Policy,
) -> list[dict[str, Any]]:
    """Per version served in the window: label coverage and delay, metrics with intervals."""
    out = []
    for version in sorted(set(current.versions.tolist())):
        mv = version_of(version)
        if mv is None:
            continue
        part = current.where(current.versions == version)
        out.append(_one_version(part, feedback, mv, policy))
    return out


def _one_version(
    part: Traffic, feedback: pd.DataFrame, mv: ModelVersion, policy: Policy
) -> dict[str, Any]:
    known = set(feedback.index.tolist())  # a set: np.isin sorts objects, arrow isin is slow
    labeled = np.fromiter((i in known for i in part.ids), dtype=bool, count=len(part.ids))
    n_labeled = int(labeled.sum())
    entry: dict[str, Any] = {
        "version": mv.version,
        "rows": len(part),
        "labeled": n_labeled,
        "coverage": n_labeled / len(part) if len(part) else 0.0,
        "delay_seconds": None,
        "unknown_labels": 0,
        "status": "ok",
        "metrics": {},
    }
    if n_labeled == 0:
        entry["status"] = "no_labels"
        return entry
    got = feedback.loc[part.ids[labeled]]
    created = pd.to_datetime(part.times[labeled]).tz_localize("UTC")
    received = pd.to_datetime(got["received_at"], utc=True).to_numpy()
    delay = (received - created.to_numpy()) / np.timedelta64(1, "s")
    entry["delay_seconds"] = {
        "median": float(np.median(delay)),
        "p90": float(np.quantile(delay, 0.9)),
        "max": float(np.max(delay)),
    }
    truth = got["label"].tolist()
    if mv.task == "regression":
        y = np.array([_float(v) for v in truth])
        keep = np.isfinite(y)
        entry["unknown_labels"] = int((~keep).sum())
        values = part.where(labeled).values()
        y, values = y[keep], values[keep]
        if len(y) < policy.min_labels:
            entry["status"] = "insufficient_labels"
            return entry
        entry["metrics"] = regression_performance(y, values, mv.metrics, policy)
        return entry
    keys = class_keys(mv)
    y = np.array([str(v) for v in truth], dtype=object)
    keep = np.isin(y, np.array(keys, dtype=object))
    entry["unknown_labels"] = int((~keep).sum())
    if int(keep.sum()) < policy.min_labels:
        entry["status"] = "insufficient_labels"
        return entry
    served = part.where(labeled)
    labels = served.labels()[keep]
    proba = served.probabilities(keys)
    if proba is not None:
        proba = proba[keep]
        if np.isnan(proba).any():
            proba = None
    entry["metrics"] = classification_performance(y[keep], labels, proba, keys, mv.metrics, policy)
    return entry


def _float(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
