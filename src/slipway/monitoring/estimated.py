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
    feedback: pd.DataFrame,
    estimator: Calibration | LossModel | None,
    policy: Policy,
) -> dict[str, Any]:
    """The estimation section of one window, for the version ``mv`` (its rows only)."""
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
    out["labeled"] = _against_labels(mv, part, feedback, estimate, policy)
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
    labels = part.labels()
    index = {k: i for i, k in enumerate(keys)}
    predicted = np.array([index.get(str(v), -1) for v in labels])
    if (predicted < 0).any():
        predicted = np.where(predicted < 0, np.argmax(proba, axis=1), predicted)

    def cbpe(mask: np.ndarray) -> dict[str, Estimate]:
        return estimation.estimate_classification(estimator, proba[mask], predicted[mask])

    return cbpe


def _against_labels(
    mv: ModelVersion, part: Traffic, feedback: pd.DataFrame, estimate: Any, policy: Policy
) -> dict[str, Any]:
    known = set(feedback.index.tolist())  # a set: np.isin sorts objects, arrow isin is slow
    labeled = np.fromiter((i in known for i in part.ids), dtype=bool, count=len(part.ids))
    out: dict[str, Any] = {"rows": int(labeled.sum()), "metrics": {}}
    if labeled.sum() < policy.min_labels:
        out["status"] = "insufficient_labels" if labeled.any() else "no_labels"
        return out
    truth = feedback.loc[part.ids[labeled], "label"].tolist()
    served = part.where(labeled)
    if mv.task == "regression":
        y = pd.to_numeric(pd.Series(truth, dtype=object), errors="coerce").to_numpy(dtype=float)
        err = served.values() - y
        ok = np.isfinite(err)
        realized = {
            "mae": float(np.mean(np.abs(err[ok]))),
            "rmse": float(np.sqrt(np.mean(err[ok] ** 2))),
        }
        mask = labeled.copy()
        mask[np.flatnonzero(labeled)[~ok]] = False
    else:
        from slipway.evaluation import classification_metrics

        keys = class_keys(mv)
        y = np.array([str(v) for v in truth], dtype=object)
        ok = np.isin(y, np.array(keys, dtype=object))
        proba = served.probabilities(keys)
        assert proba is not None
        realized = classification_metrics(
            y[ok], served.labels()[ok], proba[ok], np.array(keys, dtype=object)
        )
        mask = labeled.copy()
        mask[np.flatnonzero(labeled)[~ok]] = False
    if mask.sum() < policy.min_labels:
        out["status"] = "insufficient_labels"
        return out
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
