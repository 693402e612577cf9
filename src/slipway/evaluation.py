"""Validation metrics recorded at registration, and optional k-fold cross-validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from slipway.exceptions import ConfigError

CALIBRATION_BINS = 10


def classification_metrics(
    y_true: Any, labels: np.ndarray, proba: np.ndarray | None, classes: np.ndarray
) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC-AUC, log-loss, Brier score and calibration error.

    Binary problems score the second class of ``classes`` as positive; multiclass problems
    use macro averages, one-vs-rest ROC-AUC and the multiclass Brier score.
    """
    y_true = np.asarray(y_true)
    binary = len(classes) == 2
    avg: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro"}
    )
    out = {
        "accuracy": skm.accuracy_score(y_true, labels),
        "precision": skm.precision_score(y_true, labels, zero_division=0, **avg),
        "recall": skm.recall_score(y_true, labels, zero_division=0, **avg),
        "f1": skm.f1_score(y_true, labels, zero_division=0, **avg),
    }
    if proba is not None and len(np.unique(y_true)) > 1:
        if binary:
            out["roc_auc"] = skm.roc_auc_score(y_true == classes[1], proba[:, 1])
            out["brier"] = skm.brier_score_loss(y_true == classes[1], proba[:, 1])
        else:
            present = np.isin(classes, y_true)
            if present.all():
                out["roc_auc"] = skm.roc_auc_score(
                    y_true, proba, multi_class="ovr", average="macro", labels=classes
                )
            onehot = (y_true[:, None] == classes[None, :]).astype(float)
            out["brier"] = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
        out["log_loss"] = skm.log_loss(y_true, proba, labels=classes)
        out["calibration_error"] = calibration_error(y_true, proba, classes)
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


def calibration_error(
    y_true: Any, proba: np.ndarray, classes: Any, weights: np.ndarray | None = None
) -> Any:
    """Expected calibration error over 10 equal-width probability bins.

    Binary: the positive class's probability against its observed frequency; multiclass: the
    top-label confidence against accuracy. ``weights`` (resamples x rows) gives one value per
    row of weights, which is how monitoring bootstraps it.
    """
    y, cls = np.asarray(y_true), np.asarray(classes)
    if len(cls) == 2:
        conf, hit = proba[:, 1], (y == cls[1]).astype(float)
    else:
        top = np.argmax(proba, axis=1)
        conf, hit = proba[np.arange(len(y)), top], (cls[top] == y).astype(float)
    w = np.ones((1, conf.size)) if weights is None else weights
    bins = np.minimum((conf * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    onehot = np.zeros((conf.size, CALIBRATION_BINS))
    onehot[np.arange(conf.size), bins] = 1.0
    gap = np.abs(w @ (onehot * hit[:, None]) - w @ (onehot * conf[:, None]))
    ece = gap.sum(axis=1) / w.sum(axis=1)
    return float(ece[0]) if weights is None else ece


def regression_metrics(y_true: Any, values: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error and R²."""
    y_true = np.asarray(y_true, dtype=float)
    out = {
        "mae": skm.mean_absolute_error(y_true, values),
        "rmse": math.sqrt(skm.mean_squared_error(y_true, values)),
    }
    if len(y_true) > 1:
        out["r2"] = skm.r2_score(y_true, values)
    return {k: float(v) for k, v in out.items()}


def cross_validation(
    pipeline: Any, X: Any, y: Any, *, folds: int, task: str, seed: int = 0
) -> dict[str, dict[str, float]]:
    """k-fold scores of fresh clones of ``pipeline``: ``{metric: {"mean", "std", "folds"}}``.

    Each fold is scored with the same metrics as the validation data; classification folds
    are stratified.
    """
    if folds < 2:
        raise ConfigError(f"cv needs at least 2 folds, not {folds}.")
    if task == "classification":
        splitter: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    y_arr = np.asarray(y)
    scores: dict[str, list[float]] = {}
    for train_idx, test_idx in splitter.split(np.zeros(len(y_arr)), y_arr):
        model = clone(pipeline).fit(_rows(X, train_idx), y_arr[train_idx])
        X_test, y_test = _rows(X, test_idx), y_arr[test_idx]
        if task == "classification":
            proba = model.predict_proba(X_test) if hasattr(model, "predict_proba") else None
            fold = classification_metrics(
                y_test, np.asarray(model.predict(X_test)), proba, np.asarray(model.classes_)
            )
        else:
            fold = regression_metrics(y_test, np.asarray(model.predict(X_test)))
        for name, value in fold.items():
            scores.setdefault(name, []).append(value)
    return {
        name: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": len(v)}
        for name, v in scores.items()
    }


def _rows(X: Any, idx: np.ndarray) -> Any:
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]
