"""The routing seam: one policy picks the version answering every request on every protocol."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from slipway.serving import Production, Route
from slipway.serving.batching import MicroBatcher
from slipway.serving.runtime import Served
from slipway.store.schema import predictions


class Arms:
    """A test policy: units starting with "b" get fraud:2 (arm B of "exp"), other units the
    production version (arm A); a request naming no unit gets production outside the test."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.asked: list[tuple[str, str | None]] = []
        self.b: Served | None = None

    def route(self, name, unit_id, row=None):
        """Record the question; answer by the unit's first letter."""
        self.asked.append((name, unit_id))
        production = self.runtime.production_route(name)
        if unit_id is None:
            return production
        if unit_id.startswith("b"):
            if self.b is None:
                self.b = Served(self.runtime.registry.load(f"{name}:2"), datetime.now(UTC))
            return Route(self.b, "B", "exp")
        return Route(production.served, "A", "exp")


def with_arms(serve, make_fitted, **overrides):
    """A service on fraud:1 (production) with an unpromoted fraud:2 and the Arms policy."""
    h = serve(routing=Arms, **overrides)
    second = make_fitted("frame", seed=1)
    h.registry.register(second.pipeline, "fraud", second.X_train, second.y_train)
    return h, h.service.runtime.policy


def logged(h, ids):
    """(version, variant, experiment, unit_id) of each logged prediction, by id."""
    assert h.service.log.flush()
    with h.registry.store.read() as conn:
        query = sa.select(predictions).where(predictions.c.prediction_id.in_(ids))
        return {
            r.prediction_id: (r.version, r.variant, r.experiment, r.unit_id)
            for r in conn.execute(query)
        }


def v2_body(h, rows, **parameters):
    """A V2 JSON body with one tensor per field of fraud's contract."""
    contract = h.service.runtime.get("fraud").model.contract
    kinds = {"number": "FP64", "integer": "INT64"}
    inputs = [
        {
            "name": f.name,
            "shape": [len(rows)],
            "datatype": kinds.get(f.kind, "BYTES"),
            "data": [r[f.name] for r in rows],
        }
        for f in contract.fields
    ]
    body = {"inputs": inputs}
    if parameters:
        body["parameters"] = parameters
    return body


def test_the_default_policy_answers_with_production_and_logs_no_arm(serve):
    """Production routes every unit to the alias's version; variant and experiment stay null."""
    harness = serve(routing=Production)
    runtime = harness.service.runtime
    assert isinstance(runtime.policy, Production)
    route = runtime.route("fraud", "anyone")
    assert route == Route(runtime.get("fraud")) and route is runtime.route("fraud", None)
    body = harness.post("/v1/models/fraud/predict", {"instances": harness.rows("fraud", 2)}).json()
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert set(logged(harness, ids).values()) == {(1, None, None, None)}


@pytest.mark.parametrize("lane", [True, False], ids=["direct-lane", "fastapi-route"])
def test_v1_predict_asks_the_policy_with_the_body_unit(serve, make_fitted, lane):
    """Both ways into /v1 predict route by unit_id; the arm answers and the log names it."""
    h, policy = with_arms(serve, make_fitted, serve_fast_path=lane)
    rows = h.rows("fraud", 2)
    b = h.post("/v1/models/fraud/predict", {"instances": rows, "unit_id": "bob"})
    a = h.post("/v1/models/fraud/predict", {"instances": rows, "unit_ids": ["al", "al"]})
    mixed = h.post("/v1/models/fraud/predict", {"instances": rows, "unit_ids": ["al", "bo"]})
    assert [r.status_code for r in (a, b, mixed)] == [200, 200, 200]
    assert policy.asked == [("fraud", "bob"), ("fraud", "al"), ("fraud", None)]
    assert (b.json()["version"], a.json()["version"], mixed.json()["version"]) == (2, 1, 1)
    assert (b.json()["arm"], b.json()["experiment"]) == ("B", "exp")  # the answer names its arm
    assert set(mixed.json()) == {"model", "version", "predictions"}  # outside: today's JSON
    ids = {
        k: [p["prediction_id"] for p in r.json()["predictions"]]
        for k, r in (("a", a), ("b", b), ("m", mixed))
    }
    log = logged(h, [i for v in ids.values() for i in v])
    assert {log[i] for i in ids["b"]} == {(2, "B", "exp", "bob")}
    assert {log[i] for i in ids["a"]} == {(1, "A", "exp", "al")}
    assert [log[i] for i in ids["m"]] == [(1, None, None, "al"), (1, None, None, "bo")]


def test_v2_infer_routes_by_the_unit_id_parameter(serve, make_fitted):
    """V2 passes parameters.unit_id to the policy and logs it; a bad one is a 422."""
    h, policy = with_arms(serve, make_fitted)
    rows = h.rows("fraud", 2)
    b = h.post("/v2/models/fraud/infer", v2_body(h, rows, unit_id="bea"))
    plain = h.post("/v2/models/fraud/infer", v2_body(h, rows))
    assert (b.status_code, plain.status_code) == (200, 200)
    assert (b.json()["model_version"], plain.json()["model_version"]) == ("2", "1")
    assert policy.asked == [("fraud", "bea"), ("fraud", None)]
    ids = next(o["data"] for o in b.json()["outputs"] if o["name"] == "prediction_id")
    assert set(logged(h, ids).values()) == {(2, "B", "exp", "bea")}
    bad = h.post("/v2/models/fraud/infer", v2_body(h, rows, unit_id=7))
    assert bad.status_code == 422 and "parameters.unit_id" in bad.text


def test_v2_infer_naming_a_version_is_answered_by_that_version(serve, make_fitted):
    """/versions/1/infer pins the production version even for a unit the policy sends to B."""
    h, policy = with_arms(serve, make_fitted)
    r = h.post("/v2/models/fraud/versions/1/infer", v2_body(h, h.rows("fraud", 1), unit_id="bo"))
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    assert policy.asked == [("fraud", "bo")]
    ids = next(o["data"] for o in r.json()["outputs"] if o["name"] == "prediction_id")
    assert set(logged(h, ids).values()) == {(1, None, None, "bo")}
    assert h.post("/v2/models/fraud/versions/2/infer", v2_body(h, [])).status_code == 404


def test_mlflow_invocations_ask_the_policy_for_unit_none(serve, make_fitted):
    """/invocations names no unit: the policy is asked with None and its answer serves."""
    h, policy = with_arms(serve, make_fitted)
    r = h.post("/invocations", {"dataframe_records": h.rows("fraud", 2)})
    assert r.status_code == 200 and policy.asked == [("fraud", None)]
    assert set(logged(h, r.json()["prediction_ids"]).values()) == {(1, None, None, None)}


def test_an_unserved_model_is_a_404_before_the_body_is_judged(harness):
    """The model is checked first, as before routing: a bad body to an unknown model is a 404."""
    r = harness.post("/v1/models/nope/predict", {"instances": "not rows"})
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_the_batcher_merges_per_answering_version_keeping_each_route(serve, make_fitted):
    """Requests one version answers share a call whatever their arm; another version's do not."""
    h, _ = with_arms(serve, make_fitted)
    runtime = h.service.runtime
    routes = [runtime.route("fraud", u) for u in ("al", None, "bo", "bea")]
    rows = h.rows("fraud", 4)
    batcher = MicroBatcher(h.service.answerer)

    async def go():
        calls = [batcher.answer(r, [row], scope={}) for r, row in zip(routes, rows, strict=True)]
        return await asyncio.gather(*calls)

    answers = asyncio.run(go())
    metrics = h.service.metrics.registry
    for version, calls, requests in ((1, 1, 2), (2, 1, 2)):
        labels = {"model": "fraud", "version": str(version)}
        assert metrics.get_sample_value("slipway_model_batch_requests_count", labels) == calls
        assert metrics.get_sample_value("slipway_model_batch_requests_sum", labels) == requests
    assert [a.served.version for a in answers] == [1, 1, 2, 2]
    log = logged(h, [a.ids[0] for a in answers])
    arms = [log[a.ids[0]][1:3] for a in answers]
    assert arms == [("A", "exp"), (None, None), ("B", "exp"), ("B", "exp")]


def test_every_arm_of_a_turn_is_answered_at_once_each_by_its_own_call(serve, make_fitted):
    """Both arms' requests of one turn: a model call per arm, one log hand-over and one pass
    for all (a lone request of an arm too); answers as each version alone, counted apart."""
    h, _ = with_arms(serve, make_fitted)
    runtime, answerer = h.service.runtime, h.service.answerer
    routes = [runtime.route("fraud", u) for u in ("al", "ann", "bo", "amy", "ab")]
    rows = h.rows("fraud", 5)
    batcher = MicroBatcher(answerer)
    handed: list[int] = []
    put_many = answerer.log.put_many
    answerer.log.put_many = lambda items: handed.append(len(items)) or put_many(items)

    async def go():
        calls = [batcher.answer(r, [row], scope={}) for r, row in zip(routes, rows, strict=True)]
        return await asyncio.gather(*calls)

    answers = asyncio.run(go())
    del answerer.log.put_many
    assert handed == [5]
    metrics = h.service.metrics.registry
    for version, requests in ((1, 4), (2, 1)):
        labels = {"model": "fraud", "version": str(version)}
        assert metrics.get_sample_value("slipway_model_batch_requests_count", labels) == 1
        assert metrics.get_sample_value("slipway_model_batch_requests_sum", labels) == requests
        ok = metrics.get_sample_value("slipway_model_requests_total", {**labels, "outcome": "ok"})
        assert ok == requests
        assert metrics.get_sample_value("slipway_predictions_total", labels) == requests
    assert [a.served.version for a in answers] == [1, 1, 2, 1, 1]
    for route, row, answer in zip(routes, rows, answers, strict=True):
        alone = answerer.infer(route, [row]).outputs
        assert answer.outputs[0]["label"] == alone[0]["label"]
        assert answer.outputs[0]["probabilities"] == pytest.approx(alone[0]["probabilities"])
    ids = [a.ids[0] for a in answers]
    assert len(set(ids)) == 5
    log = logged(h, ids)
    assert [log[i][:2] for i in ids] == [(1, "A"), (1, "A"), (2, "B"), (1, "A"), (1, "A")]
