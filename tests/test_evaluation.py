"""Metrics and cross-validation agree with scikit-learn's own functions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold, cross_val_score

from slipway.evaluation import classification_metrics, cross_validation, regression_metrics


def test_multiclass_metrics_use_macro_averages_and_the_multiclass_brier():
    """Macro precision/recall/F1, one-vs-rest AUC, and mean squared distance to one-hot."""
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b", "c"], 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    classes = np.array(["a", "b", "c"])
    labels = classes[proba.argmax(1)]
    out = classification_metrics(y, labels, proba, classes)
    assert out["f1"] == pytest.approx(metrics.f1_score(y, labels, average="macro"))
    assert out["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, proba, multi_class="ovr"))
    assert out["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=classes))
    onehot = (y[:, None] == classes).astype(float)
    assert out["brier"] == pytest.approx(((proba - onehot) ** 2).sum(1).mean())


def test_string_binary_labels_use_the_second_class_as_positive():
    """pos_label is classes[1], whatever the label type."""
    y = np.array(["no", "yes", "yes", "no"])
    out = classification_metrics(
        y, np.array(["no", "yes", "no", "no"]), None, np.array(["no", "yes"])
    )
    assert out["recall"] == 0.5 and out["precision"] == 1.0


def test_single_class_validation_skips_undefined_metrics():
    """ROC-AUC is undefined with one class present; it is left out, not NaN."""
    y = np.zeros(10, dtype=int)
    out = classification_metrics(y, y, np.tile([0.9, 0.1], (10, 1)), np.array([0, 1]))
    assert "roc_auc" not in out and out["accuracy"] == 1.0


def test_regression_metrics_match_sklearn():
    """MAE, RMSE and R² equal sklearn's."""
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=50), rng.normal(size=50)
    out = regression_metrics(y, p)
    assert out.keys() == {"mae", "rmse", "r2"}
    assert out["mae"] == pytest.approx(metrics.mean_absolute_error(y, p), rel=1e-12)
    assert out["rmse"] == pytest.approx(metrics.root_mean_squared_error(y, p), rel=1e-12)
    assert out["r2"] == pytest.approx(metrics.r2_score(y, p), rel=1e-12)
    assert regression_metrics(y[:1], p[:1]).keys() == {"mae", "rmse"}  # R² needs two rows


def test_cross_validation_matches_sklearns_scores_fold_by_fold():
    """Mean accuracy over stratified folds equals cross_val_score with the same splitter."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    out = cross_validation(LogisticRegression(), X, y, folds=4, task="classification", seed=3)
    ref = cross_val_score(
        LogisticRegression(), X, y, cv=StratifiedKFold(4, shuffle=True, random_state=3)
    )
    assert out["accuracy"]["mean"] == pytest.approx(ref.mean())
    assert out["accuracy"]["std"] == pytest.approx(ref.std())
    reg = cross_validation(Ridge(), X, X[:, 0] * 2, folds=3, task="regression")
    assert reg["r2"]["mean"] > 0.99 and reg["r2"]["folds"] == 3
