"""The prediction core: labels derived from one predict_proba call equal predict, always."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier

from slipway.contract import Contract
from slipway.exceptions import ContractViolation
from slipway.predict import Enriched, Model, Predictions


class CountingPipeline:
    """Wraps a fitted estimator and counts predict / predict_proba calls."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = {"predict": 0, "predict_proba": 0}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, X):
        self.calls["predict"] += 1
        return self.inner.predict(X)

    def predict_proba(self, X):
        self.calls["predict_proba"] += 1
        return self.inner.predict_proba(X)


class LastClassWinsTies(ClassifierMixin, BaseEstimator):
    """Predicts uniform probabilities for x < 0 and breaks those ties to the *last* class."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float)
        k = len(self.classes_)
        proba = np.zeros((len(X), k))
        proba[:, 0] = 1.0
        tie = X[:, 0] < 0
        proba[tie] = 1.0 / k
        return proba

    def predict(self, X):
        proba = self.predict_proba(X)
        k = len(self.classes_)
        return self.classes_[k - 1 - np.argmax(proba[:, ::-1], axis=1)]


class TiesOnlyBelowZero(ClassifierMixin, BaseEstimator):
    """Binary: confident for x >= 0; for x < 0 an exact tie (x < -1) or a near tie 1e-12 apart
    (the kind float noise makes), which its own rule breaks to class "b" while argmax says "a".
    Rows in (-2e-6, -1e-6] are 1e-6 apart: not a tie, argmax and predict both say "a"."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        x = np.asarray(X, dtype=float)[:, 0]
        p_a = np.where(x >= 0, 0.9, 0.5 + 1e-12)
        p_a = np.where(x < -1, 0.5, p_a)
        p_a = np.where((x <= -1e-6) & (x > -2e-6), 0.5 + 5e-7, p_a)
        return np.c_[p_a, 1 - p_a]

    def predict(self, X):
        x = np.asarray(X, dtype=float)[:, 0]
        near = (x <= -1e-6) & (x > -2e-6)
        return np.where((x < 0) & ~near, self.classes_[1], self.classes_[0])


@pytest.mark.parametrize("kind", ["frame", "array", "multiclass"])
def test_labels_and_probabilities_equal_the_pipeline(registry, make_fitted, kind):
    """load().predict / predict_proba equal the original pipeline on held-out data."""
    fitted = make_fitted(kind)
    mv = registry.register(fitted.pipeline, "m", fitted.X_train, fitted.y_train)
    model = registry.load(mv.ref)
    np.testing.assert_array_equal(
        model.predict(fitted.X_val), fitted.pipeline.predict(fitted.X_val)
    )
    np.testing.assert_array_equal(
        model.predict_proba(fitted.X_val), fitted.pipeline.predict_proba(fitted.X_val)
    )


def test_regressor_values_equal_the_pipeline(registry, make_fitted):
    """A regressor's values equal pipeline.predict, for frames and records."""
    fitted = make_fitted("regressor")
    model = registry.load(registry.register(fitted.pipeline, "r", fitted.X_train).ref)
    expected = fitted.pipeline.predict(fitted.X_val)
    np.testing.assert_array_equal(model.predict(fitted.X_val), expected)
    records = fitted.X_val.to_dict(orient="records")
    np.testing.assert_allclose(model.predict(records), expected, rtol=0, atol=1e-12)
    assert model.score(records[:2]).records()[0] == {"value": pytest.approx(expected[0])}
    with pytest.raises(AttributeError, match="regression"):
        model.predict_proba(fitted.X_val)


def test_array_inputs_work_for_a_frame_trained_model_and_vice_versa(registry, make_fitted):
    """A plain 20-float vector works for an array-trained model; records too."""
    fitted = make_fitted("array")
    model = registry.load(registry.register(fitted.pipeline, "a", fitted.X_train).ref)
    row = fitted.X_val[0].tolist()
    assert model.predict([row]).tolist() == fitted.pipeline.predict(fitted.X_val[:1]).tolist()
    named = pd.DataFrame(fitted.X_val, columns=model.contract.names)
    np.testing.assert_array_equal(model.predict(named), fitted.pipeline.predict(fitted.X_val))


def test_classifier_calls_predict_proba_once_and_not_predict(registry, make_fitted):
    """Without ties the core costs one predict_proba call per batch."""
    fitted = make_fitted("frame")
    loaded = registry.load(registry.register(fitted.pipeline, "m", fitted.X_train).ref)
    counting = CountingPipeline(loaded.pipeline)
    model = Model(counting, loaded.version)
    result = model.score(fitted.X_val)
    assert counting.calls == {"predict": 0, "predict_proba": 1}
    np.testing.assert_array_equal(result.labels, fitted.pipeline.predict(fitted.X_val))


def test_binary_ties_follow_the_estimators_own_rule(registry):
    """GBC with learning_rate=0 ties at [0.5, 0.5]; predict says class 1, argmax would say 0."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.array([0, 1] * 100)
    gbc = GradientBoostingClassifier(n_estimators=2, learning_rate=0.0).fit(X, y)
    assert (gbc.predict_proba(X) == 0.5).all() and (gbc.predict(X) == 1).all()
    model = registry.load(registry.register(gbc, "tie", X, y).ref)
    np.testing.assert_array_equal(model.predict(X), gbc.predict(X))


def test_multiclass_ties_are_resolved_by_predict_only_for_tied_rows(registry):
    """Tied rows get the pipeline's own label; predict sees only those rows."""
    X = np.linspace(-1, 1, 40).reshape(-1, 1)
    y = np.array(["x", "y", "z", "x"] * 10)
    est = LastClassWinsTies().fit(X, y)
    model = registry.load(registry.register(est, "ties", X, y).ref)
    seen = []
    original = est.predict
    model.pipeline.predict = lambda Z: (seen.append(len(Z)), original(Z))[1]
    labels = model.predict(X)
    np.testing.assert_array_equal(labels, est.predict(X))
    assert set(labels[X[:, 0] < 0]) == {"z"} and set(labels[X[:, 0] >= 0]) == {"x"}
    assert seen == [int((X[:, 0] < 0).sum())]


def test_split_mode_scores_good_rows_and_returns_problems_for_the_rest(registry, make_fitted):
    """on_error='split' keeps going: bad rows are reported, good rows scored."""
    fitted = make_fitted("frame")
    # unseen="reject": the pipeline ignores unknown categories, which would only flag row 3.
    mv = registry.register(fitted.pipeline, "m", fitted.X_train, unseen="reject")
    model = registry.load(mv.ref)
    rows = fitted.X_val.head(4).to_dict(orient="records")
    rows[1]["amount"] = "lots"
    rows[3]["country"] = "XX"
    result = model.score(rows, on_error="split")
    assert result.rows.tolist() == [0, 2]
    assert sorted(result.rejected) == [1, 3]
    assert result.rejected[1][0].field == "amount"
    expected = fitted.pipeline.predict(fitted.X_val.head(4).iloc[[0, 2]])
    np.testing.assert_array_equal(result.labels, expected)
    with pytest.raises(ContractViolation, match="2 problem"):
        model.score(rows)


def test_records_are_json_ready(registry, make_fitted):
    """Each record has the label and probabilities keyed by class name."""
    fitted = make_fitted("multiclass")
    model = registry.load(registry.register(fitted.pipeline, "mc", fitted.X_train).ref)
    rec = model.score(fitted.X_val[:1]).records()[0]
    assert rec["label"] in {"a", "b", "c"}
    assert set(rec["probabilities"]) == {"a", "b", "c"}
    assert sum(rec["probabilities"].values()) == pytest.approx(1.0)


def test_empty_input_gives_empty_predictions(registry, make_fitted):
    """Zero rows in, zero rows out, with the right shapes."""
    fitted = make_fitted("frame")
    model = registry.load(registry.register(fitted.pipeline, "m", fitted.X_train).ref)
    result = model.score([])
    assert len(result) == 0 and result.probabilities.shape == (0, 2)
    assert result.records() == []


def test_a_long_class_label_comes_back_whole_in_records_and_column_names(registry):
    """Labels and class keys are data: a 300-character class is never cut to 200 characters."""
    from sklearn.linear_model import LogisticRegression

    import slipway

    long = "x" * 300
    X = pd.DataFrame({"a": np.arange(40, dtype=float)})
    y = np.where(X["a"] < 20, long, "short")
    registry.register(LogisticRegression().fit(X, y), "labels", X, y)
    model = registry.load("labels")
    result = model.score(X.iloc[:1])
    assert result.records()[0]["label"] == long
    assert long in result.records()[0]["probabilities"]
    scored = slipway.score(model, X.iloc[:1])
    assert f"proba:{long}" in scored.predictions.columns


def test_predict_equals_the_pipeline_bit_for_bit_on_its_own_frame_or_array(registry):
    """A frame or array already shaped like the training data reaches the pipeline as given,
    so a linear model's dot products sum in the same order: identical to the last bit."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(300, 10)) * 1000
    X = pd.DataFrame(matrix, columns=[f"x{i}" for i in range(10)])
    y = matrix @ rng.normal(size=10)
    pipe = Ridge().fit(X, y)
    registry.register(pipe, "ridge", X, y)
    model = registry.load("ridge")
    for frame in (X, pd.DataFrame({c: X[c].to_numpy() for c in X.columns})):  # C and F layouts
        np.testing.assert_array_equal(model.predict(frame), pipe.predict(frame))
    fitted = Ridge().fit(matrix, y)
    registry.register(fitted, "array", matrix, y)
    loaded = registry.load("array")
    for arr in (matrix, np.asfortranarray(matrix)):
        np.testing.assert_array_equal(loaded.predict(arr), fitted.predict(arr))


def test_near_and_exact_ties_seen_only_at_predict_time_follow_predict(registry):
    """Registration sees no tie; at predict time exact ties and ties within the tolerance
    (probabilities 2e-12 apart) get the pipeline's own label, and only they call predict."""
    X_train = np.linspace(0, 1, 40).reshape(-1, 1)
    y = np.array(["a", "b"] * 20)
    est = TiesOnlyBelowZero().fit(X_train, y)
    mv = registry.register(est, "near", X_train, y)
    assert mv.meta["label_from_proba"] is True  # no tie at registration: labels from proba
    model = registry.load(mv.ref)
    X = np.array([[0.5], [-0.5], [-1.5], [-1.5e-6], [0.2], [-0.25]])
    seen = []
    original = est.predict
    model.pipeline.predict = lambda Z: (seen.append(len(Z)), original(Z))[1]
    labels = model.predict(X)
    assert labels.tolist() == ["a", "b", "b", "a", "a", "b"] == est.predict(X).tolist()
    assert seen == [3]  # the exact tie and the two near ties, in one call


def test_a_classifier_without_predict_proba_registers_and_answers_labels_only(registry):
    """RidgeClassifier has no predict_proba: it registers (served by scikit-learn), predict
    equals its own, predict_proba is refused naming the model, and results carry labels only."""
    from sklearn.linear_model import RidgeClassifier

    X = pd.DataFrame({"a": np.linspace(0, 1, 40), "b": np.linspace(2, 1, 40)})
    y = np.where(X["a"] < 0.5, "lo", "hi")
    pipe = RidgeClassifier().fit(X, y)
    mv = registry.register(pipe, "ridge_clf", X, y)
    assert mv.meta["backend"] == "sklearn"
    model = registry.load(mv.ref)
    np.testing.assert_array_equal(model.predict(X), pipe.predict(X))
    with pytest.raises(AttributeError, match="ridge_clf:1 is a classification model without"):
        model.predict_proba(X)
    result = model.score(X.head(2))
    assert result.probabilities is None and result.classes == ["hi", "lo"]
    assert result.records() == [{"label": v} for v in pipe.predict(X.head(2)).tolist()]
    empty = model.score(X.head(0))
    assert empty.labels.tolist() == [] and empty.probabilities is None


class Doubler:
    """An enricher: requests carry ``a``; the pipeline's ``b`` is computed as ``2 * a``."""

    names = ("b",)

    def __init__(self, inner):
        self.inner = inner  # the pipeline's own contract
        self.contract = Contract.learn(pd.DataFrame({"a": np.linspace(0, 1, 40)}))

    def enrich(self, checked):
        """Both columns, bad rows' values as 0; the computed ``b`` of every row."""
        a = np.nan_to_num(checked.columns["a"].astype(float))
        return Enriched(self.inner.validate(pd.DataFrame({"a": a, "b": 2 * a})), {"b": 2 * a})

    def refuse_unstorable(self, checked):
        """No keys: nothing to refuse."""


def test_an_enricher_sets_the_contract_and_computes_the_pipelines_input(registry):
    """With an enricher, input is checked against its contract, the pipeline gets what it
    computed, and the computed features of the scored rows come back with the predictions."""
    from sklearn.linear_model import LogisticRegression

    a = np.linspace(0, 1, 40)
    X = pd.DataFrame({"a": a, "b": 2 * a + np.sin(7 * a)})
    pipe = LogisticRegression().fit(X, np.where(X["b"] > 1, "hi", "lo"))
    loaded = registry.load(registry.register(pipe, "enriched", X).ref)
    model = Model(loaded.pipeline, loaded.version, enricher=Doubler(loaded.version.contract))
    assert model.contract is model.enricher.contract
    assert not model.validate([{"a": 0.5, "b": 1.0}]).ok  # b is computed, never sent
    result = model.score([{"a": 0.1}, {"a": "x"}, {"a": 0.9}], on_error="split")
    assert result.rows.tolist() == [0, 2] and list(result.rejected) == [1]
    np.testing.assert_allclose(result.features["b"], [0.2, 1.8])
    expected = pipe.predict(pd.DataFrame({"a": [0.1, 0.9], "b": [0.2, 1.8]}))
    np.testing.assert_array_equal(result.labels, expected)


def test_a_problem_of_the_whole_input_rejects_every_row_under_minus_one(registry, make_fitted):
    """In split mode a missing column is no row's problem: nothing is scored and the problem
    is reported under row -1."""
    fitted = make_fitted("frame")
    model = registry.load(registry.register(fitted.pipeline, "m", fitted.X_train).ref)
    frame = fitted.X_val.head(3).drop(columns=["amount"])
    result = model.score(frame, on_error="split")
    assert result.rows.tolist() == [] and result.labels.tolist() == []
    assert list(result.rejected) == [-1]
    assert [(p.code, p.field) for p in result.rejected[-1]] == [("missing_field", "amount")]


def test_empty_results_have_each_tasks_shapes(registry, make_fitted):
    """Zero rows: a regressor gets zero values, a multiclass model zero labels of its classes'
    type and a (0, 3) probability matrix."""
    fitted = make_fitted("regressor")
    model = registry.load(registry.register(fitted.pipeline, "r", fitted.X_train).ref)
    empty = model.score(fitted.X_val.head(0))
    assert empty.values.shape == (0,) and empty.labels is None and len(empty) == 0
    fitted = make_fitted("multiclass")
    model = registry.load(registry.register(fitted.pipeline, "mc", fitted.X_train).ref)
    empty = model.score(fitted.X_val[:0])
    assert empty.labels.shape == (0,) and empty.labels.dtype == np.asarray(model.classes).dtype
    assert empty.probabilities.shape == (0, 3) and empty.classes == ["a", "b", "c"]


def test_probability_columns_are_named_by_the_class_as_json_and_read_back():
    """``proba:<class>`` holds the class as JSON text; any other column is no class's."""
    assert Predictions.proba_column("yes") == "proba:yes"
    assert Predictions.proba_column(np.int64(3)) == "proba:3"
    assert Predictions.proba_column(True) == "proba:True"
    assert Predictions.proba_class("proba:yes") == "yes"
    assert Predictions.proba_class("proba:") == ""
    assert Predictions.proba_class("label") is None
