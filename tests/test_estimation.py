"""Performance estimation without labels: CBPE tracks realized performance through covariate
shift and parts from it under concept shift; DLE does the same for regressors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from slipway import estimation

BETA = np.array([1.5, -1.0, 0.5])


def _classification(rng, n, shift=0.0, beta=BETA):
    X = rng.normal(size=(n, 3)) + np.array([shift, 0.0, 0.0])
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ beta - 1.0)))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def calibrated():
    """A logistic model on data it is right about, calibrated on 5,000 validation rows."""
    rng = np.random.default_rng(0)
    X, y = _classification(rng, 5000)
    model = LogisticRegression().fit(X, y)
    Xv, yv = _classification(rng, 5000)
    cal = estimation.fit_calibration(yv.astype(str), model.predict_proba(Xv), ["0", "1"])
    return model, cal


def _realized(y, proba):
    pred = proba.argmax(axis=1)
    return {
        "accuracy": accuracy_score(y, pred),
        "precision": precision_score(y, pred, zero_division=0),
        "recall": recall_score(y, pred),
        "f1": f1_score(y, pred),
        "roc_auc": roc_auc_score(y, proba[:, 1]),
    }


def test_cbpe_band_covers_realized_performance_under_covariate_shift(calibrated):
    """Inputs drift by up to 2 SD, P(y|x) stays: realized accuracy and ROC-AUC lie within the
    estimate's band in at least 90% of 80 windows."""
    model, cal = calibrated
    rng = np.random.default_rng(1)
    windows = 80
    covered = {"accuracy": 0, "roc_auc": 0, "f1": 0}
    accuracies = []
    for w in range(windows):
        X, y = _classification(rng, 1000, shift=2.0 * w / windows)
        proba = model.predict_proba(X)
        est = estimation.estimate_classification(cal, proba, proba.argmax(axis=1), seed=w)
        real = _realized(y, proba)
        accuracies.append(real["accuracy"])
        for name in covered:
            covered[name] += est[name].covers(real[name])
    assert max(accuracies) - min(accuracies) > 0.05, "the shift must move performance"
    assert covered["accuracy"] / windows >= 0.9
    assert covered["roc_auc"] / windows >= 0.9
    assert covered["f1"] / windows >= 0.9


def test_cbpe_realized_falls_outside_the_band_under_concept_shift(calibrated):
    """When P(y|x) changes, the labels disagree with the estimate beyond its band."""
    model, cal = calibrated
    rng = np.random.default_rng(2)
    X, y = _classification(rng, 1000, beta=np.array([-0.5, -1.0, 0.5]))
    proba = model.predict_proba(X)
    est = estimation.estimate_classification(cal, proba, proba.argmax(axis=1))
    real = _realized(y, proba)
    assert not est["accuracy"].covers(real["accuracy"])
    assert not est["roc_auc"].covers(real["roc_auc"])


def test_expected_metrics_of_certain_probabilities_are_the_realized_metrics():
    """With calibrated probabilities that are the true labels, expectation equals realization."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    scores = np.column_stack([1 - (p := rng.random(500)), p])
    pred = scores.argmax(axis=1)
    onehot = np.column_stack([1 - y, y]).astype(float)
    got = estimation.expected_metrics(onehot, pred, scores)
    assert got == pytest.approx(_realized(y, scores), abs=1e-12)


def test_cbpe_on_a_million_rows_has_a_narrow_band_around_realized(calibrated):
    """A large window is estimated from a subsample's spread scaled to its size."""
    model, cal = calibrated
    rng = np.random.default_rng(4)
    X, y = _classification(rng, 1_000_000, shift=1.0)
    proba = model.predict_proba(X)
    est = estimation.estimate_classification(cal, proba, proba.argmax(axis=1))
    real = _realized(y, proba)
    assert est["accuracy"].covers(real["accuracy"])
    assert est["accuracy"].high - est["accuracy"].low < 0.03


def test_multiclass_cbpe_estimates_accuracy():
    """Three classes: one-vs-rest maps, rows renormalized; accuracy within the band in at
    least 85% of 30 windows."""
    rng = np.random.default_rng(5)
    W = rng.normal(size=(3, 3))

    def draw(n, shift=0.0):
        X = rng.normal(size=(n, 3)) + shift
        logits = X @ W
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
        return X, y

    X, y = draw(4000)
    model = LogisticRegression().fit(X, y)
    Xv, yv = draw(4000)
    cal = estimation.fit_calibration(yv, model.predict_proba(Xv), [0, 1, 2])
    covered = 0
    for w in range(30):
        X, y = draw(1000, shift=0.7 * w / 30)
        proba = model.predict_proba(X)
        est = estimation.estimate_classification(cal, proba, proba.argmax(axis=1), seed=w)
        covered += est["accuracy"].covers(accuracy_score(y, proba.argmax(axis=1)))
    assert covered / 30 >= 0.85
    assert np.allclose(cal.apply(proba).sum(axis=1), 1.0)


def test_calibration_round_trips_through_json(calibrated):
    """The stored artifact gives back the same calibration."""
    _, cal = calibrated
    back = estimation.load_estimator(cal.to_bytes(), {"method": "cbpe"}, "joblib")
    p = np.column_stack([1 - (x := np.linspace(0, 1, 11)), x])
    assert np.array_equal(back.apply(p), cal.apply(p))


def _regression(rng, n, shift=0.0, concept=False):
    X = pd.DataFrame({"x": rng.normal(shift, 1, n), "g": rng.choice(["a", "b"], n, p=[0.7, 0.3])})
    noise = np.where(X["g"] == "b", 3.0, 1.0) * (1 + np.abs(X["x"]))
    slope = 2.0 if not concept else 3.5
    y = slope * X["x"].to_numpy() + rng.normal(size=n) * noise
    return X, y


def test_dle_band_covers_realized_mae_and_rmse_under_covariate_shift():
    """Heteroscedastic errors, inputs drifting: realized MAE and RMSE within the band in at
    least 90% of windows; under concept shift the realized MAE leaves it."""
    rng = np.random.default_rng(6)
    X, y = _regression(rng, 4000)
    model = LinearRegression().fit(X[["x"]], y)
    Xv, yv = _regression(rng, 4000)
    loss = estimation.fit_loss_model(
        Xv, yv, model.predict(Xv[["x"]]), {"x": "number", "g": "category"}
    )
    windows, covered, maes = 40, {"mae": 0, "rmse": 0}, []
    for w in range(windows):
        X, y = _regression(rng, 1000, shift=1.5 * w / windows)
        values = model.predict(X[["x"]])
        est = estimation.estimate_regression(loss, X, values)
        err = y - values
        maes.append(np.mean(np.abs(err)))
        covered["mae"] += est["mae"].covers(float(np.mean(np.abs(err))))
        covered["rmse"] += est["rmse"].covers(float(np.sqrt(np.mean(err**2))))
    assert max(maes) - min(maes) > 0.3
    assert covered["mae"] / windows >= 0.9 and covered["rmse"] / windows >= 0.9
    X, y = _regression(rng, 1000, shift=1.0, concept=True)
    values = model.predict(X[["x"]])
    est = estimation.estimate_regression(loss, X, values)
    assert not est["mae"].covers(float(np.mean(np.abs(y - values))))


def test_registration_stores_the_estimator_and_its_reference(registry, make_fitted):
    """A classifier registered with validation data gets a calibration artifact and the CBPE
    estimate of its validation data; a regressor a loss model."""
    fitted = make_fitted("frame", n=1200)
    mv = registry.register(
        fitted.pipeline, "c", fitted.X_train, fitted.y_train, X_val=fitted.X_val, y_val=fitted.y_val
    )
    assert mv.meta["estimation"]["method"] == "cbpe"
    ref = mv.meta["estimation"]["reference"]
    assert ref["accuracy"] == pytest.approx(mv.metrics["accuracy"], abs=0.03)
    cal = registry.estimator(mv)
    assert isinstance(cal, estimation.Calibration) and cal.rows == len(fitted.y_val)
    reg = make_fitted("regressor")
    rv = registry.register(
        reg.pipeline, "r", reg.X_train, reg.y_train, X_val=reg.X_val, y_val=reg.y_val
    )
    loss = registry.estimator(rv)
    assert isinstance(loss, estimation.LossModel) and rv.meta["estimation"]["method"] == "dle"
    m, _ = loss.losses(reg.X_val, reg.pipeline.predict(reg.X_val))
    assert np.all(m >= 0)
    bare = registry.register(fitted.pipeline, "n", fitted.X_train, fitted.y_train)
    assert registry.estimator(bare) is None


def test_the_expected_auc_of_a_window_equals_the_weighted_auc_of_unit_weights():
    """The lean AUC that expected metrics take over a whole window equals ``weighted_auc``
    with unit weights: distinct and tied scores, probabilities or 0/1 as positives, and NaN
    when every row is certain of one class."""
    rng = np.random.default_rng(31)
    score = rng.random(5_000)
    tied = score.round(2)
    q = rng.random(5_000)
    for s, positive in ((score, q), (tied, q), (tied, (q > 0.5).astype(float)), (score[:1], q[:1])):
        want = estimation.weighted_auc(np.ones((1, s.size)), s, positive)[0]
        assert estimation._unit_auc(s, positive) == want
    assert np.isnan(estimation._unit_auc(tied, np.ones(5_000)))
