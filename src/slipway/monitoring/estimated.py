"""Estimated performance of a window (CBPE or DLE, see ``slipway.estimation``) beside the
realized performance of its labeled rows.

Each estimated metric is compared with what the estimator says on the version's own
validation data (its reference). The window ALERTs (``estimated_performance_drop``) when a
metric's whole band lies below the reference by more than the policy's
``performance_tolerance``: performance has dropped, and no label was needed to say so. Where
labels exist, the estimate on the labeled rows is set beside their realized value; realized
outside the band, off by more than the tolerance and farther than a Bonferroni-corrected
distance across the compared metrics WARNs (``estimate_disagrees``): the labels no longer
follow the probabilities the model learned, the signature of concept drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from slipway import estimation
from slipway.estimation import Calibration, Estimate, LossModel
from slipway.monitoring.outcomes import class_keys
from slipway.monitoring.policy import Policy
from slipway.monitoring.traffic import Traffic
from slipway.versions import ModelVersion

LOWER_IS_BETTER = frozenset({"mae", "rmse"})


def estimate_window(
    mv: ModelVersion,
    traffic: Traffic,
    labeled: Traffic,
    estimator: Calibration | LossModel | None,
    policy: Policy,
) -> dict[str, Any]:
    """The estimation section of one window, for the version ``mv`` (its rows only).

    ``traffic`` is the window's traffic, ``labeled`` its labeled predictions (with feedback,
    see :func:`~slipway.monitoring.traffic.read_labeled`).
    """
    part = traffic.where(traffic.versions == mv.version)
    out: dict[str, Any] = {"version": mv.version, "rows": len(part)}
    info = mv.meta.get("estimation") or {}
    if estimator is None:
        out["status"] = "unavailable"
        out["reason"] = info.get("reason") or (
            "the version was registered without validation data (or before estimators were "
            "recorded)"
        )
        return out
    out["method"] = info.get("method")
    reference = dict(info.get("reference", {}))
    if len(part) < policy.min_rows:
        out["status"] = "insufficient_data"
        return out
    estimate = _estimator_of(mv, estimator, part)
    if estimate is None:
        out["status"] = "unavailable"
        out["reason"] = "the log holds no probabilities for this version"
        return out
    estimated = estimate(np.ones(len(part), dtype=bool))
    del estimate  # its arrays (the window's probabilities) are not needed for the labeled rows
    tol = policy.performance_tolerance
    metrics = {}
    for name, e in estimated.items():
        ref = reference.get(name)
        entry: dict[str, Any] = {**e.to_dict(), "reference": ref, "drop": False}
        if ref is not None and np.isfinite(e.low) and np.isfinite(e.high):
            scale = abs(ref) if name in LOWER_IS_BETTER else 1.0
            entry["drop"] = bool(
                e.low > ref + tol * scale if name in LOWER_IS_BETTER else e.high < ref - tol
            )
        metrics[name] = entry
    out.update(status="ok", metrics=metrics)
    mine = labeled.where(labeled.versions == mv.version)
    out["labeled"] = _against_labels(mv, mine, _estimator_of(mv, estimator, mine), policy)
    return out


def _estimator_of(mv: ModelVersion, estimator: Calibration | LossModel, part: Traffic) -> Any:
    """A function from a row mask to the estimates of those rows, or None without inputs."""
    if isinstance(estimator, LossModel):
        values = part.values()
        frame = part.inputs

        def dle(mask: np.ndarray) -> dict[str, Estimate]:
            return estimation.estimate_regression(
                estimator, frame.loc[mask].reset_index(drop=True), values[mask]
            )

        return dle
    keys = class_keys(mv)
    proba = part.probabilities(keys)
    if proba is None or np.isnan(proba).any():
        return None
    predicted = _class_indices(part.label_series(), keys)
    if (predicted < 0).any():
        predicted = np.where(predicted < 0, np.argmax(proba, axis=1), predicted)

    def cbpe(mask: np.ndarray) -> dict[str, Estimate]:
        if mask.all():  # the whole window: no copies (ten million rows, a quarter gigabyte)
            return estimation.estimate_classification(estimator, proba, predicted)
        return estimation.estimate_classification(estimator, proba[mask], predicted[mask])

    return cbpe


def _class_indices(labels: pd.Series, keys: Sequence[str]) -> np.ndarray:
    """Each served label's index in ``keys`` (-1: not one of them), compared as text.

    A Categorical (as read from the log) is mapped through its categories, each distinct
    label once, instead of row by row: at ten million rows the texts alone, as an object
    array, took hundreds of megabytes and seconds.
    """
    index = {k: i for i, k in enumerate(keys)}
    if isinstance(labels.dtype, pd.CategoricalDtype):
        texts = [*labels.cat.categories, np.nan]  # code -1 (missing) takes the last entry
        mapping = np.array([index.get(str(v), -1) for v in texts], dtype=np.int64)
        return mapping[labels.cat.codes.to_numpy()]
    return np.array([index.get(str(v), -1) for v in labels], dtype=np.int64)


def _against_labels(
    mv: ModelVersion, served: Traffic, estimate: Any, policy: Policy
) -> dict[str, Any]:
    """Estimates on the labeled rows ``served`` (in the log's order) beside their realized
    metrics; ``estimate`` maps a mask over those rows to their estimates."""
    out: dict[str, Any] = {"rows": len(served), "metrics": {}}
    if len(served) < policy.min_labels or estimate is None:
        out["status"] = "insufficient_labels" if len(served) else "no_labels"
        return out
    # Labels that are not the version's classes (or not numbers) are left out first, so a
    # window whose labels are all unknown says insufficient_labels instead of failing.
    if mv.task == "regression":
        err = served.values() - served.truth_values()
        mask = np.isfinite(err)
    else:
        keys = class_keys(mv)
        y = served.truth()
        mask = np.isin(y, np.array(keys, dtype=object))
    if mask.sum() < policy.min_labels:
        out["status"] = "insufficient_labels"
        return out
    if mv.task == "regression":
        realized = {
            "mae": float(np.mean(np.abs(err[mask]))),
            "rmse": float(np.sqrt(np.mean(err[mask] ** 2))),
        }
    else:
        from slipway.evaluation import classification_metrics

        proba = served.probabilities(keys)
        assert proba is not None
        realized = classification_metrics(
            y[mask], served.labels()[mask], proba[mask], np.array(keys, dtype=object)
        )
    on_labeled = {k: e for k, e in estimate(mask).items() if k in realized}
    tol = policy.performance_tolerance
    # Several metrics are compared at once: a disagreement must pass a Bonferroni-corrected
    # distance (reading each 95% band as ±1.96 standard errors) as well as the tolerance.
    z95 = float(norm.ppf(0.975))
    z_crit = float(norm.ppf(1 - policy.alpha / (2 * max(len(on_labeled), 1))))
    for name, e in on_labeled.items():
        r = realized[name]
        off = abs(r - e.value) > tol * (abs(e.value) if name in LOWER_IS_BETTER else 1.0)
        side = (e.high - e.value) if r > e.value else (e.value - e.low)
        far = side <= 0 or abs(r - e.value) / (side / z95) > z_crit
        out["metrics"][name] = {
            "estimated": e.to_dict(),
            "realized": r,
            "inside_band": e.covers(r),
            "agrees": not (off and far and not e.covers(r)),
        }
    out["status"] = "ok"
    return out
