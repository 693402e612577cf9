"""What a fitted pipeline handles (nulls, unseen categories), inferred per input column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from slipway.exceptions import InvalidModel
from slipway.tolerance import tolerated
from tests.conftest import transactions

NAMES = ["amount", "hour", "merchant", "country"]


def fit(pre, model=None):
    """Fit ``pre`` followed by a logistic regression (or ``model``) on the transactions."""
    X, y = transactions(300)
    return Pipeline([("pre", pre), ("model", model or LogisticRegression(max_iter=300))]).fit(X, y)


def columns(num, cat, remainder="drop"):
    """A ColumnTransformer: ``num`` on amount and hour, ``cat`` on merchant and country."""
    return ColumnTransformer(
        [("num", num, ["amount", "hour"]), ("cat", cat, ["merchant", "country"])],
        remainder=remainder,
    )


def test_an_imputer_allows_nulls_and_an_ignoring_encoder_flags_unseen():
    """SimpleImputer -> nulls handled; OneHotEncoder(handle_unknown='ignore') -> unseen handled."""
    pipe = fit(
        columns(
            make_pipeline(SimpleImputer(), StandardScaler()), OneHotEncoder(handle_unknown="ignore")
        )
    )
    got = tolerated(pipe, NAMES)
    assert got["amount"] == {"null": "SimpleImputer (step pre__num__simpleimputer)"}
    assert got["hour"] == got["amount"]
    assert got["merchant"] == {"unseen": "OneHotEncoder(handle_unknown='ignore') (step pre__cat)"}


@pytest.mark.parametrize(
    ("num", "cat"),
    [
        (StandardScaler(), OneHotEncoder()),  # a strict encoder, no imputer
        (SimpleImputer(missing_values=-1), OneHotEncoder(handle_unknown="error")),  # not NaN
        (FunctionTransformer(np.log1p), OneHotEncoder(handle_unknown="infrequent_if_exist")),
    ],
    ids=["strict", "imputes-other-values", "function-transformer"],
)
def test_what_the_pipeline_does_not_clearly_handle_stays_refused(num, cat):
    """No imputer of NaN, a strict encoder or an unknown step: nothing is inferred for them."""
    got = tolerated(fit(columns(num, cat)), NAMES)
    assert "null" not in got.get("amount", {})
    if isinstance(cat, OneHotEncoder) and cat.handle_unknown == "infrequent_if_exist":
        assert got["merchant"]["unseen"].startswith("OneHotEncoder(handle_unknown=")
    else:
        assert "unseen" not in got.get("merchant", {})


def test_nulls_passed_through_reach_an_estimator_that_accepts_them():
    """Passthrough, then HistGradientBoosting (which takes NaN): nulls are handled natively."""
    pre = columns(
        "passthrough", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    )
    got = tolerated(fit(pre, HistGradientBoostingClassifier(max_iter=5)), NAMES)
    assert got["amount"]["null"].startswith("HistGradientBoostingClassifier (step model)")
    assert got["country"]["unseen"].startswith("OrdinalEncoder(handle_unknown='use_encoded_value')")
    plain = tolerated(fit(columns("passthrough", OneHotEncoder())), NAMES)
    assert "amount" not in plain  # LogisticRegression refuses NaN


def test_a_dropped_column_tolerates_anything():
    """A column the ColumnTransformer drops cannot break the pipeline."""
    pre = ColumnTransformer([("num", StandardScaler(), ["amount"])], remainder="drop")
    got = tolerated(fit(pre), NAMES)
    assert got["merchant"] == {
        "null": "dropped (step pre__remainder)",
        "unseen": "dropped (step pre__remainder)",
    }
    assert "amount" not in got


def test_every_branch_must_handle_it():
    """A column fed to two branches is tolerated only when both tolerate it."""
    union = FeatureUnion(
        [("ohe", OneHotEncoder(handle_unknown="ignore")), ("ord", OrdinalEncoder())]
    )
    pre = ColumnTransformer([("cat", union, ["merchant"])], remainder="drop")
    assert "unseen" not in tolerated(fit(pre), NAMES).get("merchant", {})
    union = FeatureUnion(
        [
            ("ohe", OneHotEncoder(handle_unknown="ignore")),
            ("ord", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
        ]
    )
    pre = ColumnTransformer([("cat", union, ["merchant"])], remainder="drop")
    why = tolerated(fit(pre), NAMES)["merchant"]["unseen"]
    assert "step pre__cat__ohe" in why and "step pre__cat__ord" in why


def test_a_bare_estimator_or_an_array_pipeline():
    """Positional inputs work too; a bare estimator without NaN support handles nothing."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    assert tolerated(LogisticRegression().fit(X, y), ["feature_0", "feature_1", "feature_2"]) == {}
    pipe = make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, y)
    got = tolerated(pipe, ["feature_0", "feature_1", "feature_2"])
    assert set(got) == {"feature_0", "feature_1", "feature_2"}
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    assert tolerated(HistGradientBoostingClassifier(max_iter=5).fit(frame, y), ["a", "b", "c"])[
        "a"
    ] == {"null": "HistGradientBoostingClassifier (the estimator), which accepts missing values"}


def test_register_lets_through_what_the_pipeline_handles(registry, capsys, monkeypatch):
    """An imputed column takes nulls, an ignoring encoder's column flags unseen categories, the
    answers equal the pipeline's, and the model card says why."""
    X, y = transactions(300)
    pipe = fit(
        columns(
            make_pipeline(SimpleImputer(), StandardScaler()),
            OneHotEncoder(handle_unknown="ignore"),
        )
    )
    mv = registry.register(pipe, "handles", X, y)
    rows = X.head(3).copy()
    rows.loc[0, "amount"], rows.loc[1, "country"] = np.nan, "ZZ"
    scored = registry.load(mv.ref).score(rows)
    np.testing.assert_array_equal(scored.labels, pipe.predict(rows))
    assert [(w.row, w.field) for w in scored.warnings] == [(1, "country")]

    from slipway.cli import _render
    from slipway.cli._common import console

    console.print(_render.model_card(mv))
    card = capsys.readouterr().out
    assert "nulls allowed in amount, hour: handled by SimpleImputer" in card
    assert "unseen categories flagged in merchant, country: handled by" in card


def test_register_overrides_win_over_what_the_pipeline_handles(registry):
    """nullable, unseen and ranges given to register decide; bounds still works."""
    X, y = transactions(300)
    pipe = fit(
        columns(
            make_pipeline(SimpleImputer(), StandardScaler()),
            OneHotEncoder(handle_unknown="ignore"),
        )
    )
    mv = registry.register(
        pipe,
        "strict",
        X,
        y,
        nullable={"amount": False},
        unseen={"country": "reject"},
        ranges={"hour": (0, 23)},
        bounds={"amount": (0, None)},
    )
    fields = {f.name: f for f in mv.contract.fields}
    assert not fields["amount"].nullable and fields["hour"].nullable
    assert (fields["hour"].low, fields["hour"].high) == (0, 23)
    assert (fields["amount"].low, fields["amount"].high) == (0, None)
    assert mv.contract.unseen_for(fields["country"]) == "reject"
    assert mv.contract.unseen_for(fields["merchant"]) == "flag"
    with pytest.raises(InvalidModel, match=r"unseen names columns not in X_train: \['ghost'\]"):
        registry.register(pipe, "typo", X, y, unseen={"ghost": "flag"})
