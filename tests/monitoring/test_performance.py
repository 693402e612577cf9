"""Realized performance: metrics equal sklearn's, weighted ones too; intervals cover."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from statsmodels.stats.proportion import proportion_confint

from slipway.evaluation import calibration_error
from slipway.monitoring.performance import (
    _weighted_classification,
    classification_performance,
    regression_performance,
)
from slipway.monitoring.policy import Policy

CLASSES = np.array(["no", "yes"], dtype=object)


def binary(n, seed, *, skill=1.0):
    """Probabilities, sampled truth and argmax labels of a calibrated-ish binary scorer."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, n)
    y = np.where(rng.random(n) < np.clip(0.5 + skill * (p - 0.5), 0, 1), "yes", "no").astype(object)
    return y, np.where(p > 0.5, "yes", "no").astype(object), np.c_[1 - p, p]


def test_weighted_metrics_equal_sklearn_with_sample_weights():
    """Every bootstrap metric, with integer weights, equals sklearn's with sample_weight."""
    y, labels, proba = binary(800, 0)
    w = np.random.default_rng(1).integers(0, 4, size=(1, 800)).astype(float)
    got = {
        k: float(v[0]) for k, v in _weighted_classification(w, y, labels, proba, CLASSES).items()
    }
    sw, pos = w[0], y == "yes"
    assert got["accuracy"] == pytest.approx(
        skm.accuracy_score(y, labels, sample_weight=sw), rel=1e-9
    )
    assert got["precision"] == pytest.approx(
        skm.precision_score(y, labels, pos_label="yes", sample_weight=sw), rel=1e-9
    )
    assert got["recall"] == pytest.approx(
        skm.recall_score(y, labels, pos_label="yes", sample_weight=sw), rel=1e-9
    )
    assert got["f1"] == pytest.approx(
        skm.f1_score(y, labels, pos_label="yes", sample_weight=sw), rel=1e-9
    )
    assert got["roc_auc"] == pytest.approx(
        skm.roc_auc_score(pos, proba[:, 1], sample_weight=sw), rel=1e-9
    )
    assert got["log_loss"] == pytest.approx(
        skm.log_loss(y, proba, labels=CLASSES, sample_weight=sw), rel=1e-9
    )
    assert got["brier"] == pytest.approx(
        skm.brier_score_loss(pos, proba[:, 1], sample_weight=sw), rel=1e-9
    )


def test_multiclass_macro_metrics_equal_sklearn():
    """Macro F1 and one-vs-rest AUC at unit weights equal sklearn's."""
    rng = np.random.default_rng(2)
    classes = np.array(["a", "b", "c"], dtype=object)
    proba = rng.dirichlet([1, 1, 1], 600)
    y = classes[rng.integers(0, 3, 600)]
    labels = classes[proba.argmax(1)]
    got = _weighted_classification(np.ones((1, 600)), y, labels, proba, classes)
    assert got["f1"][0] == pytest.approx(skm.f1_score(y, labels, average="macro"), rel=1e-9)
    assert got["roc_auc"][0] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr"), rel=1e-9
    )


def test_calibration_error_of_a_calibrated_scorer_is_small_and_of_a_shifted_one_large():
    """ECE is near 0 when frequencies match probabilities and grows when they do not."""
    rng = np.random.default_rng(3)
    p = rng.uniform(size=20_000)
    y = np.where(rng.random(20_000) < p, "yes", "no")
    assert calibration_error(y, np.c_[1 - p, p], CLASSES) < 0.02
    q = np.clip(p + 0.2, 0, 1)
    assert calibration_error(y, np.c_[1 - q, q], CLASSES) > 0.15


def test_intervals_contain_the_estimate_and_cover_the_truth_about_95_percent():
    """Over 60 samples from one population, the AUC interval covers its large-sample value."""
    truth = classification_performance(*binary(200_000, 99), CLASSES, {}, Policy(bootstrap=20))
    true_auc = truth["roc_auc"]["value"]
    covered = 0
    for seed in range(60):
        out = classification_performance(*binary(400, seed), CLASSES, {}, Policy())
        auc = out["roc_auc"]
        assert auc["low"] <= auc["value"] <= auc["high"]
        covered += auc["low"] <= true_auc <= auc["high"]
    assert 51 <= covered <= 60  # ~95%, with slack for 60 draws


@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_intervals_are_95_percent_intervals(seed):
    """For metrics that are means over rows the percentile interval is the normal one of a
    mean, 1.96 standard errors each side, within Monte Carlo noise (a 90% interval is 16%
    narrower, a 99% one 31% wider); its middle is the estimate."""
    y, labels, proba = binary(2_000, seed)
    out = classification_performance(y, labels, proba, CLASSES, {}, Policy(bootstrap=2_000))
    pos = y == "yes"
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=2_000)
    pred = truth + rng.normal(0, 0.5, 2_000)
    mae = regression_performance(truth, pred, {}, Policy(bootstrap=2_000))["mae"]
    per_row = {
        "brier": (out["brier"], (proba[:, 1] - pos) ** 2),
        "log_loss": (out["log_loss"], -np.log(np.where(pos, proba[:, 1], proba[:, 0]))),
        "mae": (mae, np.abs(pred - truth)),
    }
    for name, (got, values) in per_row.items():
        se = values.std() / np.sqrt(values.size)  # the bootstrap's standard error of a mean
        width = got["high"] - got["low"]
        assert got["value"] == pytest.approx(values.mean(), rel=1e-9), name
        assert width / (2 * 1.959964 * se) == pytest.approx(1.0, abs=0.07), name
        assert abs((got["low"] + got["high"]) / 2 - got["value"]) < 0.1 * width, name
        assert got["interval"] == "bootstrap"


def test_proportions_get_the_wilson_interval_of_statsmodels():
    """Accuracy, and binary precision and recall, carry Wilson 95% intervals."""
    y, labels, proba = binary(700, 3)
    out = classification_performance(y, labels, proba, CLASSES, {}, Policy())
    said, true = labels == "yes", y == "yes"
    counts = {
        "accuracy": (int(np.sum(y == labels)), len(y)),
        "precision": (int(np.sum(said & true)), int(np.sum(said))),
        "recall": (int(np.sum(said & true)), int(np.sum(true))),
    }
    for name, (k, n) in counts.items():
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert out[name]["interval"] == "wilson"
        assert out[name]["low"] == pytest.approx(low, rel=1e-9), name
        assert out[name]["high"] == pytest.approx(high, rel=1e-9), name
        assert out[name]["value"] == pytest.approx(k / n, rel=1e-12), name


def test_degraded_needs_the_whole_interval_beyond_the_tolerance():
    """A registration value inside the interval is not degraded; far above it is."""
    y, labels, proba = binary(2_000, 4)
    acc = float(np.mean(y == labels))
    near = classification_performance(y, labels, proba, CLASSES, {"accuracy": acc + 0.01}, Policy())
    far = classification_performance(y, labels, proba, CLASSES, {"accuracy": acc + 0.2}, Policy())
    assert not near["accuracy"]["degraded"] and far["accuracy"]["degraded"]
    assert far["accuracy"]["interval"] == "wilson" and far["f1"]["interval"] == "bootstrap"


def test_regression_performance_and_lower_is_better():
    """MAE/RMSE/R² equal sklearn's; a worse MAE than registered is degraded."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=1_000)
    pred = y + rng.normal(0, 0.5, 1_000)
    out = regression_performance(y, pred, {"mae": 0.1, "rmse": 0.5, "r2": 0.8}, Policy())
    assert out["mae"]["value"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert out["r2"]["value"] == pytest.approx(skm.r2_score(y, pred))
    assert out["mae"]["degraded"] and not out["rmse"]["degraded"]


def test_bootstrap_is_reproducible():
    """The fixed seed gives the same interval twice."""
    args = (*binary(500, 6), CLASSES, {}, Policy())
    assert classification_performance(*args)["f1"] == classification_performance(*args)["f1"]


def test_weighted_calibration_error_equals_the_registration_definition():
    """The bootstrap's calibration error (runs of score-sorted rows) equals evaluation's."""
    y, labels, proba = binary(3_000, 8)
    w = np.random.default_rng(1).integers(0, 3, size=(4, 3_000)).astype(float)
    got = _weighted_classification(w, y, labels, proba, CLASSES)["calibration_error"]
    assert got == pytest.approx(calibration_error(y, proba, CLASSES, w), rel=1e-9)
