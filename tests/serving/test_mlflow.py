"""POST /invocations with each of MLflow's scoring bodies."""

from __future__ import annotations

import pytest


def bodies(rows):
    """The four MLflow request formats for the same rows."""
    columns = list(rows[0])
    return {
        "dataframe_split": {
            "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
        },
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs_columns": {"inputs": {c: [r[c] for r in rows] for c in columns}},
        "inputs_records": {"inputs": rows, "params": {}},
    }


def test_every_mlflow_format_answers_the_labels(harness):
    """Each format gives the labels model.predict gives, with one prediction id per row."""
    rows = harness.rows("fraud", 3)
    import pandas as pd

    expected = harness.registry.load("fraud").predict(pd.DataFrame(rows)).tolist()
    for fmt, body in bodies(rows).items():
        r = harness.post("/invocations", body)
        assert r.status_code == 200, (fmt, r.text)
        assert r.json()["predictions"] == expected, fmt
        assert len(set(r.json()["prediction_ids"])) == 3


def test_positional_instances_for_array_models(serve):
    """instances as lists of values follow the contract's field order."""
    h = serve(models=("grid",))
    X = h.fitted["grid"].X_val[:2]
    r = h.post("/invocations", {"instances": X.tolist()})
    assert r.json()["predictions"] == h.registry.load("grid").predict(X).tolist()


def test_regressors_answer_values(serve):
    """A regressor's predictions are its values."""
    h = serve(models=("prices",))
    rows = h.rows("prices", 2)
    r = h.post("/invocations", {"dataframe_records": rows})
    import pandas as pd

    expected = h.registry.load("prices", backend="auto").predict(pd.DataFrame(rows)).tolist()
    assert r.json()["predictions"] == pytest.approx(expected, rel=1e-12)


def test_several_models_need_a_model_parameter(serve):
    """With two models served, /invocations needs ?model=NAME."""
    h = serve(models=("fraud", "prices"))
    body = {"dataframe_records": h.rows("prices", 1)}
    r = h.post("/invocations", body)
    assert r.status_code == 404 and "?model=NAME" in r.json()["error"]
    assert h.post("/invocations?model=prices", body).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": [], "instances": []},
        {"dataframe_split": {"columns": ["amount"], "data": [[1, 2]]}},
        {"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}},
        {"instances": [{"amount": 1}, [1]]},
        {"inputs": {"amount": [1, 2], "hour": [1]}},
        {"instances": [{}], "params": {"temperature": 1}},
        {"records": []},
    ],
)
def test_bad_mlflow_bodies_are_422(harness, body):
    """Unusable bodies are refused with JSON naming the problem."""
    r = harness.post("/invocations", body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] in ("invalid_request", "contract_violation")
