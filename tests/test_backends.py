"""The ONNX backend: accepted only when it matches scikit-learn, and labels never differ."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from slipway import backends
from slipway.exceptions import ArtifactCorrupted
from tests.test_predict import LastClassWinsTies


def reference_model(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=n) > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=30))
    return pipe.fit(X[:1500], y[:1500]), X


def test_reference_pipeline_is_accepted_and_serves_within_tolerance(registry):
    """StandardScaler + GBC converts; probabilities within 1e-5, labels identical."""
    pipe, X = reference_model()
    mv = registry.register(pipe, "gbc", X[:1500])
    assert mv.meta["backend"] == "onnx" and mv.meta["onnx"]["accepted"]
    assert mv.meta["onnx"]["rows_checked"] == 1500 and mv.meta["onnx"]["max_abs_diff"] < 1e-5
    model = registry.load("gbc", backend="auto")
    assert model.backend == "onnx"
    held_out = X[1500:]
    result = model.score(held_out)
    np.testing.assert_array_equal(result.labels, pipe.predict(held_out))
    np.testing.assert_allclose(result.probabilities, pipe.predict_proba(held_out), atol=1e-5)
    assert registry.load("gbc").backend == "sklearn"  # the Python API stays bit-identical


def test_frame_pipeline_with_categories_is_accepted(registry, make_fitted):
    """A ColumnTransformer over numbers and strings converts with one input per field."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "lr", fitted.X_train)
    model = registry.load("lr", backend="auto")
    assert model.backend == "onnx"
    records = fitted.X_val.to_dict(orient="records")
    result = model.score(records)
    np.testing.assert_array_equal(result.labels, fitted.pipeline.predict(fitted.X_val))
    np.testing.assert_allclose(
        result.probabilities, fitted.pipeline.predict_proba(fitted.X_val), atol=1e-5
    )


def test_regressor_is_accepted_within_relative_tolerance(registry):
    """Regressor values are compared relative to their magnitude."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 5))
    pipe = make_pipeline(StandardScaler(), Ridge()).fit(X, X @ np.arange(5) * 100)
    mv = registry.register(pipe, "ridge", X)
    assert mv.meta["backend"] == "onnx"
    values = registry.load("ridge", backend="auto").predict(X[:50])
    np.testing.assert_allclose(values, pipe.predict(X[:50]), rtol=1e-5)


def test_exact_ties_are_decided_by_scikit_learn(registry):
    """GBC with learning_rate=0 ties everywhere: ONNX serves, sklearn's rule picks class 1."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    gbc = GradientBoostingClassifier(n_estimators=2, learning_rate=0.0).fit(X, [0, 1] * 100)
    registry.register(gbc, "tie", X)
    model = registry.load("tie", backend="auto")
    assert model.backend == "onnx"
    np.testing.assert_array_equal(model.predict(X), gbc.predict(X))


def _double(x):
    return x * 2


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda X: LastClassWinsTies().fit(X, np.arange(len(X)) % 2), "conversion failed"),
        (
            lambda X: make_pipeline(FunctionTransformer(_double), Ridge()).fit(X, X[:, 0]),
            "conversion failed",
        ),
    ],
)
def test_unconvertible_pipelines_fall_back_to_scikit_learn(registry, make, reason):
    """A pipeline ONNX cannot express is served by scikit-learn, and the verdict says why."""
    X = np.random.default_rng(2).normal(size=(100, 2))
    mv = registry.register(make(X), "custom", X)
    assert mv.meta["backend"] == "sklearn"
    assert mv.meta["onnx"]["accepted"] is False and reason in mv.meta["onnx"]["reason"]
    assert "onnx" not in mv.meta["artifacts"]
    assert registry.load("custom", backend="auto").backend == "sklearn"


def test_a_graph_that_disagrees_is_rejected():
    """The comparison refuses differences above the tolerance and differing labels."""
    expected = np.array([[0.2, 0.8], [0.6, 0.4]])
    ok = backends._compare(expected + 1e-6, expected, lambda _: True)
    off = backends._compare(expected + 1e-3, expected, lambda _: True)
    labels = backends._compare(expected, expected, lambda _: False)
    assert ok.accepted and not off.accepted and "differs" in off.reason
    assert not labels.accepted and "labels differ" in labels.reason


def test_flagged_rows_are_answered_by_scikit_learn(registry, make_fitted):
    """Rows with an unseen category passed through never reach the ONNX graph."""
    fitted = make_fitted("frame")
    registry.register(fitted.pipeline, "flag", fitted.X_train, unseen="flag")
    model = registry.load("flag", backend="auto")
    calls = []
    session = model.engine.session
    original = session.run
    session.run = lambda *a: (calls.append(1), original(*a))[1]
    row = fitted.X_val.iloc[:1].assign(country="ZZ")
    result = model.score(row)
    assert calls == [] and result.warnings[0].code == "unseen_category"
    np.testing.assert_array_equal(result.probabilities, fitted.pipeline.predict_proba(row))
    model.score(fitted.X_val.iloc[:1])
    assert calls == [1]


def test_onnx_artifact_is_verified_before_use(registry):
    """A tampered ONNX graph is refused like a tampered pickle."""
    pipe, X = reference_model(n=1600)
    mv = registry.register(pipe, "gbc", X[:1500])
    path = registry.artifacts.path(mv.meta["artifacts"]["onnx"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtifactCorrupted):
        registry.load("gbc", backend="auto")


def test_register_can_skip_the_conversion(registry):
    """onnx=False records no verdict and serves with scikit-learn."""
    pipe, X = reference_model(n=1600)
    mv = registry.register(pipe, "gbc", X[:1500], onnx=False)
    assert mv.meta["backend"] == "sklearn" and "onnx" not in mv.meta


def test_model_card_names_the_backend(registry):
    """The backend and its evidence are visible to people."""
    from rich.console import Console

    from slipway.cli._render import model_card

    pipe, X = reference_model(n=1600)
    mv = registry.register(pipe, "gbc", X[:1500])
    console = Console(width=200, record=True)
    console.print(model_card(mv))
    assert "serving backend  onnx (matches scikit-learn within 1e-05" in console.export_text()


def test_any_engine_with_the_backend_method_plugs_into_the_core(registry, make_fitted):
    """A third engine is one class: Model asks it for outputs and derives nothing on its own."""
    from slipway.backends import Outputs, SklearnBackend
    from slipway.predict import Model

    class Halved:
        """A toy engine: scikit-learn's probabilities, halved, labelled by their argmax."""

        name = "halved"

        def __init__(self, inner):
            self.inner = inner

        def outputs(self, checked, rows):
            """Half of scikit-learn's probabilities; labels unchanged."""
            out = self.inner.outputs(checked, rows)
            return Outputs(out.labels, out.probabilities / 2)

    fitted = make_fitted("frame")
    mv = registry.register(fitted.pipeline, "toy", fitted.X_train)
    pipeline = registry.load(mv.ref).pipeline
    model = Model(pipeline, mv, Halved(SklearnBackend.of(pipeline, mv)))
    result = model.score(fitted.X_val.iloc[:5])
    assert model.backend == "halved" and repr(model).endswith("(halved)>")
    expected = fitted.pipeline.predict_proba(fitted.X_val.iloc[:5]) / 2
    np.testing.assert_array_equal(result.probabilities, expected)
    np.testing.assert_array_equal(result.labels, fitted.pipeline.predict(fitted.X_val.iloc[:5]))


def test_register_says_which_backend_serves_and_why(registry, caplog):
    """A refused graph is a warning naming the version and the reason; an accepted one, info."""
    X = np.random.default_rng(2).normal(size=(100, 2))
    custom = make_pipeline(FunctionTransformer(_double), Ridge()).fit(X, X[:, 0])
    with caplog.at_level("INFO", logger="slipway.registry"):
        registry.register(custom, "custom", X)
        registry.register(make_pipeline(StandardScaler(), Ridge()).fit(X, X[:, 0]), "plain", X)
    refused, accepted = caplog.records
    assert refused.levelname == "WARNING"
    assert "custom:1 will be served by scikit-learn, not ONNX Runtime: conversion failed" in (
        refused.getMessage()
    )
    assert accepted.levelname == "INFO"
    assert accepted.getMessage().startswith("plain:1 serves with ONNX Runtime: matches")


def test_model_card_shows_the_backend_near_the_top(registry):
    """The serving backend is the third line of the card, right after version and aliases."""
    from rich.console import Console

    from slipway.cli._render import model_card

    X = np.random.default_rng(2).normal(size=(100, 2))
    mv = registry.register(
        make_pipeline(FunctionTransformer(_double), Ridge()).fit(X, X[:, 0]), "c", X
    )
    console = Console(width=200, record=True)
    console.print(model_card(mv))
    lines = [line.strip("│ ") for line in console.export_text().splitlines()[1:4]]
    assert lines[0].startswith("version") and lines[1].startswith("aliases")
    assert lines[2].startswith("serving backend  sklearn (conversion failed")
