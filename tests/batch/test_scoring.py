"""Scoring a chunk: batch answers equal online answers; rejects carry every reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import slipway
from slipway.batch import score
from slipway.batch.scoring import chunk_keys, predict_chunk
from slipway.exceptions import BatchInputError
from tests.batch.helpers import BAD_AMOUNT_ROW, BAD_MERCHANT_ROW, input_frame


@pytest.mark.parametrize("kind", ["frame", "multiclass", "array"])
def test_batch_equals_online_row_by_row(local_registry, make_model, make_fitted, kind):
    """score() gives each row the label and probabilities Model.predict/predict_proba give it."""
    model = make_model(local_registry, kind)
    X = make_fitted(kind, seed=7).X_val
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=model.contract.names)
    scores = score(model, frame)
    assert scores.rejects.empty
    out = scores.predictions
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(frame))
    proba = out[[f"proba:{c}" for c in model.classes]].to_numpy()
    np.testing.assert_array_equal(proba, model.predict_proba(frame))
    assert out["key"].tolist() == [str(i) for i in range(len(frame))]
    assert set(out["model_name"]) == {model.name}
    assert set(out["version"]) == {model.version.version}
    assert set(out["sha256"]) == {model.version.sha256}


def test_regressor_outputs_value(local_registry, make_model, make_fitted):
    """A regressor's rows carry `value`, equal to Model.predict, and no label columns."""
    model = make_model(local_registry, "regressor")
    X = make_fitted("regressor", seed=3).X_val
    out = score(model, X).predictions
    np.testing.assert_array_equal(out["value"].to_numpy(), model.predict(X))
    assert "label" not in out and not any(c.startswith("proba:") for c in out)


def test_bad_rows_become_rejects_and_the_rest_is_scored(local_registry, make_model):
    """Contract breakers are rejected with their reasons; the others equal Model.predict."""
    model = make_model(local_registry)
    frame = input_frame(200)
    scores = slipway.score(model, frame, key_column="txn_id")
    rejects = scores.rejects.set_index("row_number")
    assert sorted(rejects.index) == [BAD_AMOUNT_ROW, BAD_MERCHANT_ROW]
    amount = rejects.loc[BAD_AMOUNT_ROW]
    assert amount["key"] == frame.txn_id[BAD_AMOUNT_ROW]
    assert [r["code"] for r in amount["reasons"]] == ["out_of_range"]
    assert amount["reasons"][0]["row"] == BAD_AMOUNT_ROW and amount["row"]["amount"] == 1e15
    merchant = rejects.loc[BAD_MERCHANT_ROW]["reasons"]
    assert [(r["field"], r["code"]) for r in merchant] == [("merchant", "unseen_category")]
    good = frame.drop(index=[BAD_AMOUNT_ROW, BAD_MERCHANT_ROW])
    out = scores.predictions
    assert out.index.equals(good.index)
    assert out["key"].tolist() == good.txn_id.tolist()
    features = good[model.contract.names]
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(features))
    np.testing.assert_array_equal(out["proba:1"].to_numpy(), model.predict_proba(features)[:, 1])


def test_score_accepts_a_reference(env, make_fitted):
    """slipway.score loads a reference string through the registry the environment names."""
    fitted = make_fitted("frame")
    slipway.register(fitted.pipeline, "fraud", fitted.X_train, fitted.y_train)
    frame = input_frame(50, bad=False)
    out = slipway.score("fraud:1", frame).predictions
    np.testing.assert_array_equal(
        out["label"].to_numpy(), fitted.pipeline.predict(frame[list(fitted.X_train.columns)])
    )


def test_missing_columns_are_named(local_registry, make_model):
    """A frame without a needed column is refused with every missing name and the key column."""
    model = make_model(local_registry)
    frame = input_frame(20).drop(columns=["amount", "hour"])
    with pytest.raises(BatchInputError, match="'amount', 'hour'"):
        score(model, frame)
    with pytest.raises(BatchInputError, match="'order_id'"):
        score(model, input_frame(20), key_column="order_id")


def test_keys_are_stable_text_whatever_the_dtype():
    """Whole-number keys read as floats or ints give the same text; null keys are problems."""
    as_int = pd.DataFrame({"k": [7, 8, 9]})
    as_float = pd.DataFrame({"k": [7.0, 8.0, np.nan]})
    ints, none = chunk_keys(as_int, "k", 100)
    floats, problems = chunk_keys(as_float, "k", 100)
    assert ints.to_pylist() == ["7", "8", "9"] and none == []
    assert floats.to_pylist() == ["7", "8", None]
    assert [(p.code, p.row) for p in problems] == [("missing_key", 2)]
    rows, _ = chunk_keys(as_int, None, 100)
    assert rows.to_pylist() == ["100", "101", "102"]


def test_null_and_overlong_keys_are_rejected(local_registry, make_model):
    """A row without a usable key is a reject, reasons naming the key column."""
    model = make_model(local_registry)
    frame = input_frame(30, bad=False)
    frame["txn_id"] = frame["txn_id"].astype(object)
    frame.loc[4, "txn_id"] = None
    frame.loc[5, "txn_id"] = "x" * 201
    chunk = predict_chunk(model, frame, first_row=1000, key_column="txn_id")
    codes = {r.row_number: [p["code"] for p in r.reasons] for r in chunk.rejects}
    assert codes == {1004: ["missing_key"], 1005: ["key_too_long"]}
    assert chunk.rows_scored == 28


def test_duplicate_keys_stop_the_chunk(local_registry, make_model):
    """Keys must identify rows: a repeated key is an error naming both rows."""
    model = make_model(local_registry)
    frame = input_frame(30, bad=False)
    frame.loc[9, "txn_id"] = frame.loc[2, "txn_id"]
    with pytest.raises(BatchInputError, match=r"rows 52 and 59"):
        predict_chunk(model, frame, first_row=50, key_column="txn_id")
