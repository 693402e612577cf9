"""Pipelines as float64 ONNX graphs: the common tabular models, accepted by the parity check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from slipway import backends, conversion
from slipway.contract import Contract

NUMBERS = ["amount", "balance/limit", "age"]


def frame(n=600, seed=0):
    """Numbers with NaN, an oddly named column, an integer, a category and a boolean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "balance/limit": rng.uniform(0, 1, n),
            "age": rng.integers(18, 90, n),
            "country": rng.choice(["DE", "FR", "GB", "BR"], n),
            "is_new": rng.random(n) < 0.3,
        }
    )
    X.loc[rng.random(n) < 0.1, "amount"] = np.nan
    amount = np.nan_to_num(X["amount"].to_numpy())
    y = ((amount > 30) ^ (X["balance/limit"] > 0.7) ^ X["is_new"]).astype(int).to_numpy()
    y3 = y + (X["country"] == "DE").to_numpy()
    value = amount * 2 + X["balance/limit"].to_numpy() * 100 + X["age"].to_numpy() / 3
    return X, y, y3, value


def standard():
    """Imputer + scaler on numbers, one-hot on the category, the boolean passed through."""
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMBERS),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
            ("bool", "passthrough", ["is_new"]),
        ]
    )


def native():
    """Categories as ordinal codes for HistGradientBoosting's native categorical splits."""
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    return ColumnTransformer([("cat", encoder, ["country"])], remainder="passthrough")


CASES = {
    "random forest": (standard, lambda: RandomForestClassifier(20, random_state=0), "y"),
    "random forest, 3 classes": (standard, lambda: RandomForestClassifier(20), "y3"),
    "random forest regressor": (standard, lambda: RandomForestRegressor(20), "value"),
    "extra trees": (standard, lambda: ExtraTreesClassifier(20), "y"),
    "decision tree": (standard, DecisionTreeClassifier, "y"),
    "gradient boosting, 3 classes": (
        standard,
        lambda: GradientBoostingClassifier(n_estimators=20),
        "y3",
    ),
    "gradient boosting regressor": (
        standard,
        lambda: GradientBoostingRegressor(n_estimators=20),
        "value",
    ),
    "hist gradient boosting": (
        standard,
        lambda: HistGradientBoostingClassifier(max_iter=20),
        "y",
    ),
    "hist gradient boosting, NaN reaching the trees": (
        native,
        lambda: HistGradientBoostingRegressor(max_iter=20),
        "value",
    ),
    "hist gradient boosting, native categories": (
        native,
        lambda: HistGradientBoostingClassifier(max_iter=20, categorical_features=[0]),
        "y3",
    ),
    "logistic regression": (standard, lambda: LogisticRegression(max_iter=500), "y"),
    "ridge": (standard, Ridge, "value"),
    "k nearest neighbours": (standard, KNeighborsClassifier, "y"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_common_pipelines_get_a_float64_graph_that_matches(case):
    """Each pipeline passes the parity check with a float64 graph on held-out rows too."""
    make_pre, make_model, target = CASES[case]
    X, y, y3, value = frame()
    targets = {"y": y[:400], "y3": y3[:400], "value": value[:400]}
    pipe = Pipeline([("pre", make_pre()), ("model", make_model())]).fit(X[:400], targets[target])
    task = "regression" if target == "value" else "classification"
    contract = Contract.learn(X[:400])
    data, verdict = backends.assess(pipe, contract, X[:400], task)
    assert verdict.accepted, verdict.reason
    assert verdict.precision == "double" and verdict.max_abs_diff < 1e-12
    got = backends.OnnxSession(data, contract).run(contract.validate(X[400:]))
    if task == "regression":  # float64 values, not float32-rounded ones
        np.testing.assert_allclose(got.ravel(), pipe.predict(X[400:]), rtol=1e-12)
    else:
        np.testing.assert_allclose(got, pipe.predict_proba(X[400:]), atol=1e-12)


def test_unseen_and_missing_categories_take_the_missing_branch():
    """Native categorical splits send NaN, unknown and negative codes where scikit-learn does."""
    X, _, y3, _ = frame()
    make_pre, make_model, _ = CASES["hist gradient boosting, native categories"]
    pipe = Pipeline([("pre", make_pre()), ("model", make_model())]).fit(X, y3)
    model = pipe[-1]
    codes = pipe[0].transform(X[:4]).astype(float)
    codes[:, 0] = [np.nan, 7.0, -1.0, 2.0]  # missing, unknown, negative, known
    contract = Contract.learn(pipe[0].transform(X).astype(float))
    session = backends.OnnxSession(conversion.convert(model, contract, "classification"), contract)
    got = session.session.run(None, {session.session.get_inputs()[0].name: codes})[1]
    expected = model.predict_proba(codes.astype(object))  # as the pipeline hands them over
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_rounding_to_float32_is_what_scikit_learn_trees_do():
    """A value just below the threshold whose float32 rounding lies above it goes right, as in
    scikit-learn (which compares float32 features with float64 thresholds)."""
    X = np.array([[0.1], [0.2]] * 50)
    y = np.array([0, 1] * 50)
    tree = DecisionTreeClassifier().fit(X, y)
    threshold = tree.tree_.threshold[0]
    below = 0.150000001  # < threshold, but float32(below) > threshold
    assert below < threshold < float(np.float32(below))
    rows = [[below], [threshold], [0.1], [0.2]]
    contract = Contract.learn(X)
    data = conversion.convert(tree, contract, "classification")
    got = backends.OnnxSession(data, contract).run(contract.validate(rows))
    np.testing.assert_array_equal(got, tree.predict_proba(np.array(rows)))
    assert got[0, 1] == 1.0


def test_float32_graph_is_the_fallback_when_float64_cannot_be_built(monkeypatch):
    """A float64 conversion failure falls back to skl2onnx's float32 graph, still checked."""
    X, y, _, _ = frame()
    pipe = Pipeline([("pre", standard()), ("model", LogisticRegression(max_iter=500))]).fit(X, y)
    original = conversion.convert

    def no_double(pipeline, contract, task, precision="double"):
        if precision == "double":
            raise NotImplementedError("no float64 today")
        return original(pipeline, contract, task, precision)

    monkeypatch.setattr(conversion, "convert", no_double)
    contract = Contract.learn(X)
    _, verdict = backends.assess(pipe, contract, X, "classification")
    assert verdict.accepted and verdict.precision == "float"
    assert "(float32)" in verdict.reason


@pytest.mark.parametrize(
    "model",
    [lambda: RandomForestRegressor(20, random_state=0), Ridge, HistGradientBoostingRegressor],
)
def test_a_bare_estimator_on_a_numeric_frame_reads_one_float64_matrix(model):
    """Without a ColumnTransformer the graph takes one [N, F] float64 input fed from the frame's
    columns in contract order, so odd names and booleans need no per-column inputs."""
    X, _, _, value = frame()
    X = X.drop(columns="country")
    pipe = make_pipeline(SimpleImputer(), model()).fit(X[:400], value[:400])
    contract = Contract.learn(X[:400])
    data, verdict = backends.assess(pipe, contract, X[:400], "regression")
    assert verdict.accepted and verdict.precision == "double", verdict.reason
    session = backends.OnnxSession(data, contract)
    assert session.matrix and [i.name for i in session.session.get_inputs()] == ["X"]
    got = session.run(contract.validate(X[400:]))
    np.testing.assert_allclose(got.ravel(), pipe.predict(X[400:]), rtol=1e-12)


def test_nearest_neighbours_use_the_cdist_kernel():
    """kNN distances come from onnxruntime's CDist node, not a Scan loop over training rows."""
    import onnx

    X, y, _, _ = frame()
    pipe = Pipeline([("pre", standard()), ("model", KNeighborsClassifier())]).fit(X, y)
    graph = onnx.load_from_string(conversion.convert(pipe, Contract.learn(X), "classification"))
    ops = {node.op_type for node in graph.graph.node}
    assert "CDist" in ops and "Scan" not in ops
