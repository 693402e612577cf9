"""Realized performance from ground truth: metrics with confidence intervals, compared with
the validation metrics recorded at registration.

Point estimates use the same definitions as registration (``slipway.evaluation``; binary
problems score the second class as positive, multiclass ones use macro averages). Intervals
are 95%: Wilson for accuracy and binary precision and recall (proportions), a percentile
bootstrap with a fixed seed for the rest. The bootstrap is vectorized: every metric is written
as a weighted sum, and each resample is a row of multinomial counts.

A metric is "degraded" when its whole interval lies on the worse side of the registration
value by more than the policy's tolerance (absolute for metrics bounded by 0 and 1, relative
for log-loss, MAE and RMSE): the same "significant and large enough" rule as drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from slipway.evaluation import calibration_error, classification_metrics, regression_metrics
from slipway.monitoring.policy import Policy
from slipway.monitoring.stats import wilson_interval

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "calibration_error", "mae", "rmse"})
UNBOUNDED = frozenset({"log_loss", "mae", "rmse"})
_CHUNK = 25  # resamples per block, bounding memory at 25 x n weights


def classification_performance(
    y_true: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    registered: Mapping[str, float],
    policy: Policy,
) -> dict[str, dict[str, Any]]:
    """Each metric's value, 95% interval and comparison with registration."""
    cls = np.asarray(classes, dtype=object)
    values = classification_metrics(y_true, labels, proba, cls)
    boot = _bootstrap(
        len(y_true), policy, lambda w: _weighted_classification(w, y_true, labels, proba, cls)
    )
    out: dict[str, dict[str, Any]] = {}
    binary = len(cls) == 2
    for name, value in values.items():
        if name == "accuracy":
            low, high = wilson_interval(int(np.sum(y_true == labels)), len(y_true))
            method = "wilson"
        elif binary and name in ("precision", "recall"):
            pos = cls[1]
            hits = int(np.sum((labels == pos) & (y_true == pos)))
            n = int(np.sum(labels == pos)) if name == "precision" else int(np.sum(y_true == pos))
            low, high = wilson_interval(hits, n)
            method = "wilson"
        else:
            low, high = _percentiles(boot.get(name))
            method = "bootstrap"
        out[name] = _compare(name, value, low, high, method, registered, policy)
    return out


def regression_performance(
    y_true: np.ndarray, values: np.ndarray, registered: Mapping[str, float], policy: Policy
) -> dict[str, dict[str, Any]]:
    """MAE, RMSE and R² with bootstrap intervals, compared with registration."""
    point = regression_metrics(y_true, values)
    err = values - y_true

    def weighted(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        mean_y = (w @ y_true) / total
        sst = w @ (y_true**2) - total * mean_y**2
        sse = w @ (err**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1 - sse / sst
        return {"mae": (w @ np.abs(err)) / total, "rmse": np.sqrt(sse / total), "r2": r2}

    boot = _bootstrap(len(y_true), policy, weighted)
    return {
        name: _compare(name, value, *_percentiles(boot.get(name)), "bootstrap", registered, policy)
        for name, value in point.items()
    }


# -- weighted metrics (rows of weights = bootstrap resamples) --------------------------------


def _weighted_classification(
    w: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray | None,
    classes: np.ndarray,
) -> dict[str, np.ndarray]:
    total = w.sum(axis=1)
    out = {"accuracy": (w @ (y == labels).astype(float)) / total}
    binary = len(classes) == 2
    targets = [classes[1]] if binary else list(classes)
    precisions, recalls, f1s = [], [], []
    for c in targets:
        is_c, said_c = (y == c).astype(float), (labels == c).astype(float)
        tp, pp, p = w @ (is_c * said_c), w @ said_c, w @ is_c
        with np.errstate(divide="ignore", invalid="ignore"):
            precisions.append(np.where(pp > 0, tp / pp, 0.0))
            recalls.append(np.where(p > 0, tp / p, 0.0))
            f1s.append(np.where(pp + p > 0, 2 * tp / (pp + p), 0.0))
    out["precision"] = np.mean(precisions, axis=0)
    out["recall"] = np.mean(recalls, axis=0)
    out["f1"] = np.mean(f1s, axis=0)
    if proba is None:
        return out
    eps = np.finfo(proba.dtype).eps
    onehot = (y[:, None] == classes[None, :]).astype(float)
    clipped = np.clip(proba, eps, 1 - eps)
    out["log_loss"] = (w @ -np.sum(onehot * np.log(clipped), axis=1)) / total
    if binary:
        out["brier"] = (w @ (proba[:, 1] - onehot[:, 1]) ** 2) / total
        out["roc_auc"] = _weighted_auc(w, proba[:, 1], onehot[:, 1].astype(bool))
    else:
        out["brier"] = (w @ np.sum((proba - onehot) ** 2, axis=1)) / total
        aucs = [
            _weighted_auc(w, proba[:, k], onehot[:, k].astype(bool)) for k in range(len(classes))
        ]
        out["roc_auc"] = np.mean(aucs, axis=0)
    out["calibration_error"] = calibration_error(y, proba, classes, w)
    return out


def _weighted_auc(w: np.ndarray, score: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC with weights, ties counted half; NaN where a class has no weight."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    wp = np.add.reduceat(w[:, order] * positive[order], starts, axis=1)
    wn = np.add.reduceat(w[:, order] * ~positive[order], starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    pos_total, neg_total = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.sum(wp * (below + 0.5 * wn), axis=1) / (pos_total * neg_total)
    return np.where((pos_total > 0) & (neg_total > 0), auc, np.nan)


def _bootstrap(n: int, policy: Policy, metrics: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(policy.seed)
    blocks: dict[str, list[np.ndarray]] = {}
    for start in range(0, policy.bootstrap, _CHUNK):
        b = min(_CHUNK, policy.bootstrap - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        w = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)
        for name, values in metrics(w).items():
            blocks.setdefault(name, []).append(np.asarray(values, dtype=float))
    return {k: np.concatenate(v) for k, v in blocks.items()}


def _percentiles(samples: np.ndarray | None) -> tuple[float, float]:
    if samples is None or np.all(np.isnan(samples)):
        return (math.nan, math.nan)
    low, high = np.nanquantile(samples, [0.025, 0.975])
    return float(low), float(high)


def _compare(
    name: str,
    value: float,
    low: float,
    high: float,
    method: str,
    registered: Mapping[str, float],
    policy: Policy,
) -> dict[str, Any]:
    ref = registered.get(name)
    out: dict[str, Any] = {
        "value": value,
        "low": low,
        "high": high,
        "interval": method,
        "registered": ref,
        "delta": None if ref is None else value - ref,
        "degraded": False,
    }
    if ref is None or math.isnan(low) or math.isnan(high):
        return out
    tol = policy.performance_tolerance * (abs(ref) if name in UNBOUNDED else 1.0)
    if name in LOWER_IS_BETTER:
        out["degraded"] = low > ref + tol
    else:
        out["degraded"] = high < ref - tol
    return out
