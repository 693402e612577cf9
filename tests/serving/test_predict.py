"""POST /v1/models/{name}/predict: same answers as Python, strict bodies, every problem listed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from slipway.store.schema import predictions, validation_failures


def logged(h, table=predictions):
    """Rows of a log table after the writer flushed."""
    assert h.service.log.flush()
    with h.registry.store.read() as conn:
        return [r._asdict() for r in conn.execute(sa.select(table)).all()]


@pytest.mark.parametrize("name", ["fraud", "grid", "species", "prices"])
def test_http_prediction_equals_python_prediction(serve, name):
    """The HTTP answer equals slipway.load(...).predict / predict_proba for the same rows."""
    h = serve(models=(name,))
    rows = h.rows(name, 5)
    r = h.post(f"/v1/models/{name}/predict", {"instances": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    model = h.registry.load(f"{name}@production", backend="auto")  # what the server runs
    frame = pd.DataFrame(rows)
    assert (body["model"], body["version"]) == (name, 1)
    items = body["predictions"]
    if name == "prices":
        np.testing.assert_allclose([i["value"] for i in items], model.predict(frame), rtol=1e-12)
        return
    assert [i["label"] for i in items] == model.predict(frame).tolist()
    proba = model.predict_proba(frame)
    classes = [str(c) for c in model.classes]
    got = np.array([[i["probabilities"][c] for c in classes] for i in items])
    np.testing.assert_allclose(got, proba, rtol=1e-12)
    original = h.fitted[name].pipeline.predict(frame if name == "fraud" else frame.to_numpy())
    assert [i["label"] for i in items] == original.tolist()


def test_features_vector_and_object_are_one_row(harness):
    """{"features": [...]} (contract order) and {"features": {...}} answer like instances."""
    row = harness.rows("fraud", 1)[0]
    names = list(harness.registry.get("fraud").contract.names)
    as_list = harness.post("/v1/models/fraud/predict", {"features": [row[n] for n in names]})
    as_dict = harness.post("/v1/models/fraud/predict", {"features": row})
    as_records = harness.post("/v1/models/fraud/predict", {"instances": [row]})
    strip = [
        {k: v for k, v in r.json()["predictions"][0].items() if k != "prediction_id"}
        for r in (as_list, as_dict, as_records)
    ]
    assert strip[0] == strip[1] == strip[2]


def test_prediction_ids_are_unique_time_sortable_uuid7(harness):
    """Each row gets its own UUIDv7; ids of later requests sort after earlier ones."""
    rows = harness.rows("fraud", 3)
    first = harness.post("/v1/models/fraud/predict", {"instances": rows}).json()["predictions"]
    second = harness.post("/v1/models/fraud/predict", {"instances": rows}).json()["predictions"]
    ids = [p["prediction_id"] for p in first + second]
    assert len(set(ids)) == 6 and ids == sorted(ids)
    assert all(len(i) == 36 and i[14] == "7" and i[19] in "89ab" for i in ids)


def test_every_prediction_is_logged_with_the_documented_json_shapes(harness):
    """inputs = the row {field: value} in contract order; outputs = the item minus its id."""
    rows = harness.rows("fraud", 2)
    reversed_rows = [dict(reversed(list(r.items()))) for r in rows]
    body = {"instances": reversed_rows, "unit_ids": ["u1", None]}
    items = harness.post("/v1/models/fraud/predict", body).json()["predictions"]
    log = {r["prediction_id"]: r for r in logged(harness)}
    names = harness.registry.get("fraud").contract.names
    for item, row, uid in zip(items, rows, ["u1", None], strict=True):
        entry = log[item.pop("prediction_id")]
        assert list(entry["inputs"]) == names and entry["inputs"] == row
        assert entry["outputs"] == item
        assert (entry["model_name"], entry["version"], entry["unit_id"]) == ("fraud", 1, uid)
        assert isinstance(entry["latency_ms"], float) and entry["created_at"].tzinfo is not None


def test_unit_id_applies_to_every_row(harness):
    """A top-level unit_id is recorded on each row of the request."""
    harness.post(
        "/v1/models/fraud/predict", {"instances": harness.rows("fraud", 2), "unit_id": "card-7"}
    )
    assert [r["unit_id"] for r in logged(harness)] == ["card-7", "card-7"]


def test_flagged_rows_carry_warnings_in_response_and_log(serve, register, tmp_path):
    """With unseen='flag', an unknown category passes with a warning on that row."""
    h = serve(models=())
    register(h.registry, "fraud", unseen="flag")
    h.service.runtime.check()
    X = h.registry.reference_sample(h.registry.get("fraud")).head(2)
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in X.to_dict("records")
    ]
    rows[1]["merchant"] = "casino"
    items = h.post("/v1/models/fraud/predict", {"instances": rows}).json()["predictions"]
    assert "warnings" not in items[0]
    (warning,) = items[1]["warnings"]
    assert (warning["row"], warning["field"], warning["code"], warning["value"]) == (
        1,
        "merchant",
        "unseen_category",
        "casino",
    )
    log = {r["prediction_id"]: r for r in logged(h)}
    assert log[items[1]["prediction_id"]]["outputs"]["warnings"] == [warning]


def test_contract_violations_list_every_problem_and_are_kept(harness):
    """422 names row, field, value and expectation of each problem; validation_failures keeps it."""
    rows = harness.rows("fraud", 2)
    rows[0]["amount"] = True
    rows[0]["hour"] = "1.5"
    rows[1]["country"] = "XX"
    del rows[1]["merchant"]
    r = harness.post("/v1/models/fraud/predict", {"instances": rows})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "contract_violation" and "Traceback" not in r.text
    got = {(p["row"], p["field"], p["code"]) for p in body["problems"]}
    assert got == {
        (0, "amount", "wrong_type"),
        (0, "hour", "wrong_type"),
        (1, "merchant", "missing_field"),
        (1, "country", "unseen_category"),
    }
    amount = next(p for p in body["problems"] if p["field"] == "amount")
    assert amount["value"] is True and "number" in amount["expected"]
    (failure,) = logged(harness, validation_failures)
    assert (failure["model_name"], failure["version"], failure["rows"]) == ("fraud", 1, 2)
    assert len(failure["problems"]) == 4
    assert logged(harness) == []


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b'{"instances": [{"amount": NaN}]}', 400, "NaN"),
        (b'{"instances": [{"amount": Infinity}]}', 400, "NaN and Infinity"),
        (b"not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"instances": [], "extra": 1}', 422, "extra"),
        (b'{"instances": []}', 422, "non-empty"),
        (b'{"instances": [1]}', 422, "object"),
        (b'{"features": "x"}', 422, "features"),
        (b'{"instances": [{}], "features": {}}', 422, "exactly one"),
        (b'{"features": {}, "unit_id": 7}', 422, "unit_id"),
        (b'{"features": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nested"),
    ],
)
def test_malformed_bodies_are_refused_with_json_naming_the_problem(harness, body, status, needle):
    """Bad bodies get 400 (unreadable) or 422 (wrong shape), never a 5xx or a stack trace."""
    r = harness.client.post("/v1/models/fraud/predict", content=body, headers=harness.auth())
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert "Traceback" not in r.text


def test_rows_per_request_are_limited(serve):
    """More rows than serve_max_rows -> 413 naming the limit."""
    h = serve(serve_max_rows=3)
    row = h.rows("fraud", 1)[0]
    r = h.post("/v1/models/fraud/predict", {"instances": [row] * 4})
    assert r.status_code == 413 and "at most 3" in r.json()["error"]
    assert h.post("/v1/models/fraud/predict", {"instances": [row] * 3}).status_code == 200


def test_unknown_model_is_404_naming_what_is_served(harness):
    """A model that is not served is a 404 listing the served ones."""
    r = harness.post("/v1/models/nope/predict", {"features": {}})
    assert r.status_code == 404 and "fraud" in r.json()["error"]


@pytest.mark.parametrize(("levels", "refused"), [(32, False), (33, True)])
def test_nesting_limit_counts_levels_exactly(harness, levels, refused):
    """The body itself is level 1; `serve_max_json_depth` (32) levels pass, one more is a 400."""
    body = b'{"features": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"
    r = harness.client.post("/v1/models/fraud/predict", content=body, headers=harness.auth())
    assert (r.status_code == 400 and "nested" in r.json()["error"]) == refused
    assert r.status_code < 500


def test_a_422_for_a_null_or_an_unseen_category_says_how_to_allow_it(harness):
    """The problem's message names the register option that would accept the value."""
    rows = harness.rows("fraud", 2)
    rows[0]["amount"] = None
    rows[1]["country"] = "XX"
    r = harness.post("/v1/models/fraud/predict", {"instances": rows})
    assert r.status_code == 422
    by_field = {p["field"]: p for p in r.json()["problems"]}
    assert "register the model with nullable=['amount']" in by_field["amount"]["message"]
    assert "unseen={'country': 'flag'}" in by_field["country"]["message"]
    assert "unseen={'country': 'flag'}" in by_field["country"]["expected"]


def test_an_onnx_served_regressor_answers_float64_values(serve):
    """Over HTTP an ONNX-served regressor's values are scikit-learn's float64 values (to 1e-12),
    not float32-rounded ones."""
    h = serve(models=("prices",))
    assert h.registry.load("prices", backend="auto").engine.name == "onnx"
    rows = h.rows("prices", 20)
    r = h.post("/v1/models/prices/predict", {"instances": rows})
    got = np.array([i["value"] for i in r.json()["predictions"]])
    expected = h.fitted["prices"].pipeline.predict(pd.DataFrame(rows))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert not np.array_equal(got, expected.astype(np.float32).astype(np.float64))
