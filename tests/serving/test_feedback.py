"""POST /v1/feedback: stored once per prediction id, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from slipway.serving.log import IdGenerator
from slipway.store.schema import feedback


def predict(h, n=3):
    """Prediction ids for ``n`` fresh predictions."""
    r = h.post("/v1/models/fraud/predict", {"instances": h.rows("fraud", n)})
    return [p["prediction_id"] for p in r.json()["predictions"]]


def stored(h):
    """prediction_id -> label in the feedback table."""
    with h.registry.store.read() as conn:
        return {r.prediction_id: r.label for r in conn.execute(sa.select(feedback))}


def test_feedback_is_accepted_once_and_labels_are_kept_as_sent(serve, settings):
    """accepted / duplicates / unknown; a second send changes nothing."""
    h = serve(settings=settings)
    ids = predict(h)
    stranger = IdGenerator().new(1)[0]
    body = {
        "feedback": [
            {"prediction_id": ids[0], "label": 1},
            {"prediction_id": ids[1], "label": "fraud"},
            {"prediction_id": stranger, "label": 0},
            {"prediction_id": "not-an-id", "label": 0},
        ]
    }
    r = h.post("/v1/feedback", body)
    assert r.status_code == 200, r.text
    assert {k: v for k, v in r.json().items() if k != "unmatched"} == {
        "accepted": 2,
        "duplicates": 0,
        "unknown": [stranger, "not-an-id"],
        "normalized": 0,
        "unknown_units": [],
        "unknown_keys": [],
    }
    again = h.post("/v1/feedback", body).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    body = {"feedback": [{"prediction_id": ids[0], "label": 0}]}
    assert h.post("/v1/feedback", body).json()["duplicates"] == 1
    assert stored(h) == {ids[0]: 1, ids[1]: "fraud"}


def test_feedback_right_after_the_prediction_finds_it(harness):
    """Feedback sent before the log writer's next batch still finds its prediction."""
    harness.service.log.flush_seconds = 60  # the writer would wait a minute on its own
    ids = predict(harness, 2)
    body = {"feedback": [{"prediction_id": i, "label": 1} for i in ids]}
    assert harness.post("/v1/feedback", body).json()["accepted"] == 2


def test_the_same_id_twice_in_one_request_counts_once(harness):
    """The first label for an id wins; the repeat is a duplicate."""
    (pid,) = predict(harness, 1)
    body = {"feedback": [{"prediction_id": pid, "label": 1}, {"prediction_id": pid, "label": 0}]}
    assert harness.post("/v1/feedback", body).json() == {
        "accepted": 1,
        "duplicates": 1,
        "unknown": [],
        "normalized": 0,
        "unmatched": [],
        "unknown_units": [],
        "unknown_keys": [],
    }
    assert stored(harness) == {pid: 1}


def test_bad_feedback_bodies_list_every_problem(harness):
    """Missing keys, null or object labels and non-string ids are 422s with problems."""
    body = {
        "feedback": [
            {"prediction_id": 5, "label": None},
            {"label": 1},
            {"prediction_id": "x", "label": {"a": 1}},
        ]
    }
    r = harness.post("/v1/feedback", body)
    assert r.status_code == 422
    got = {(p["row"], p["field"]) for p in r.json()["problems"]}
    assert got == {(0, "prediction_id"), (0, "label"), (1, "feedback"), (2, "label")}
    mixed = {"feedback": [{"model": "fraud", "unit_id": "", "label": 1, "prediction_id": "x"}]}
    assert harness.post("/v1/feedback", mixed).status_code == 422
    bad_unit = {"feedback": [{"model": 3, "unit_id": "", "label": 1}]}
    got = {
        (p["row"], p["field"]) for p in harness.post("/v1/feedback", bad_unit).json()["problems"]
    }
    assert got == {(0, "model"), (0, "unit_id")}
    assert harness.post("/v1/feedback", {"feedback": []}).status_code == 422
    assert harness.post("/v1/feedback", {"labels": []}).status_code == 422


def test_labels_are_compared_with_the_versions_classes(harness):
    """1.0 and "1" are stored as the class 1 (normalized); "yes" is stored as sent and reported
    as unmatched with the classes expected."""
    classes = harness.registry.get("fraud").classes
    assert classes == [0, 1]
    ids = predict(harness, 4)
    body = {
        "feedback": [
            {"prediction_id": ids[0], "label": 1.0},
            {"prediction_id": ids[1], "label": " 1 "},
            {"prediction_id": ids[2], "label": 0},
            {"prediction_id": ids[3], "label": "yes"},
        ]
    }
    got = harness.post("/v1/feedback", body).json()
    assert (got["accepted"], got["normalized"]) == (4, 2)
    assert got["unmatched"] == [
        {"prediction_id": ids[3], "label": "yes", "model": "fraud:1", "expected": [0, 1]}
    ]
    labels = stored(harness)
    assert [labels[i] for i in ids] == [1, 1, 0, "yes"]
    assert type(labels[ids[0]]) is int


def test_feedback_by_unit_id_labels_the_units_latest_prediction(harness):
    """{model, unit_id, label} labels the unit's most recent prediction (a resend is a
    duplicate), and a unit with no prediction is listed in unknown_units."""
    first = harness.post(
        "/v1/models/fraud/predict", {"instances": harness.rows("fraud", 2), "unit_id": "acct-7"}
    ).json()["predictions"]
    later = harness.post(
        "/v1/models/fraud/predict",
        {"instances": harness.rows("fraud", 2), "unit_ids": ["acct-7", "acct-8"]},
    ).json()["predictions"]
    body = {
        "feedback": [
            {"model": "fraud", "unit_id": "acct-7", "label": 1},
            {"model": "fraud", "unit_id": "acct-8", "label": 0},
            {"model": "fraud", "unit_id": "acct-9", "label": 0},
            {"model": "churn", "unit_id": "acct-7", "label": 0},
        ]
    }
    got = harness.post("/v1/feedback", body).json()
    assert (got["accepted"], got["unknown"]) == (2, [])
    assert got["unknown_units"] == [
        {"model": "fraud", "unit_id": "acct-9"},
        {"model": "churn", "unit_id": "acct-7"},
    ]
    assert stored(harness) == {later[0]["prediction_id"]: 1, later[1]["prediction_id"]: 0}
    assert not {p["prediction_id"] for p in first} & set(stored(harness))
    again = harness.post("/v1/feedback", {"feedback": body["feedback"][:1]}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)


def stored_outcomes(h):
    """(prediction_id, outcome) -> value in the outcomes table."""
    from slipway.store.schema import outcomes

    with h.registry.store.read() as conn:
        rows = conn.execute(sa.select(outcomes)).all()
    return {(r.prediction_id, r.outcome): r.value for r in rows}


def test_business_outcomes_are_stored_once_per_prediction_and_name(serve, settings):
    """Outcome items sit beside labels in one body; each (id, outcome) is kept once, value
    defaulting to 1; a retried request is all duplicates."""
    h = serve(settings=settings)
    ids = predict(h, 2)
    stranger = IdGenerator().new(1)[0]
    body = {
        "feedback": [
            {"prediction_id": ids[0], "label": 1},
            {"prediction_id": ids[0], "outcome": "converted", "value": 1.0},
            {"prediction_id": ids[0], "outcome": "revenue", "value": 42.5},
            {"prediction_id": ids[1], "outcome": "converted"},
            {"prediction_id": stranger, "outcome": "converted", "value": 1},
        ]
    }
    r = h.post("/v1/feedback", body)
    assert r.status_code == 200, r.text
    nothing_else = {"normalized": 0, "unmatched": [], "unknown_units": [], "unknown_keys": []}
    assert r.json() == {"accepted": 4, "duplicates": 0, "unknown": [stranger], **nothing_else}
    assert h.post("/v1/feedback", body).json() == {
        "accepted": 0,
        "duplicates": 4,
        "unknown": [stranger],
        **nothing_else,
    }
    assert stored_outcomes(h) == {
        (ids[0], "converted"): 1.0,
        (ids[0], "revenue"): 42.5,
        (ids[1], "converted"): 1.0,
    }
    assert stored(h) == {ids[0]: 1}


def test_bad_outcome_items_list_every_problem(harness):
    """A non-string outcome, a non-number value, and an item mixing label and outcome are 422s
    naming each problem."""
    body = {
        "feedback": [
            {"prediction_id": "a", "outcome": 3, "value": 1.0},
            {"prediction_id": "b", "outcome": "converted", "value": "yes"},
            {"prediction_id": "c", "outcome": "converted", "label": 1},
            {"prediction_id": "d", "outcome": "converted", "value": True},
            {"prediction_id": "e", "outcome": "revenue", "value": 1e308},  # overflows sums
            {"prediction_id": "f", "outcome": "revenue", "value": -1.5e15},
            {"prediction_id": "g", "outcome": "revenue", "value": -1e15},  # the bound itself
        ]
    }
    r = harness.post("/v1/feedback", body)
    assert r.status_code == 422
    got = {(p["row"], p["field"]) for p in r.json()["problems"]}
    assert got == {(0, "outcome"), (1, "value"), (2, "feedback"), (3, "value"), (4, "value"),
                   (5, "value")}  # fmt: skip
    assert "a number from -1e+15 to 1e+15" in r.text
