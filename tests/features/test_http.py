"""POST /v1/events and predictions with features over HTTP: in process and a real server."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from slipway.app import create_app
from slipway.keys import KeyStore
from slipway.serving.process import ServerProcess
from slipway.store.features import logged_inputs
from tests.features.helpers import START, requests
from tests.serving.helpers import subprocess_env


@pytest.fixture
def client(registry, feature_model):
    """The full service (slipway.app: POST /v1/events is its route), serving ``fraud``
    (features, recorded requests)."""
    feature_model(registry, n=1500, record_events=True)
    token = KeyStore(registry.store).create("k", "predict")[1]
    app = create_app(registry.settings, registry=registry)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def event(i: int, card: str = "c_new", day: int = 70, amount: float = 10.0) -> dict:
    return {"event_id": f"x{i}", "card_id": card, "ts": f"2026-03-{day - 59:02d}T10:00:0{i}Z",
            "amount": amount}  # fmt: skip


def test_events_are_stored_once_and_seen_by_the_next_prediction(client):
    """Posting events twice stores them once; the next prediction's features count them."""
    body = {"source": "transactions", "events": [event(1), event(2, amount=30.0)]}
    first = client.post("/v1/events", json=body)
    assert first.status_code == 200, first.text
    assert first.json() == {"source": "transactions", "received": 2, "inserted": 2, "duplicates": 0}
    assert client.post("/v1/events", json=body).json()["duplicates"] == 2
    row = {"card_id": "c_new", "ts": "2026-03-11T12:00:00Z", "amount": 40.0}
    answer = client.post("/v1/models/fraud/predict", json={"instances": [row]})
    assert answer.status_code == 200, answer.text
    metrics = client.get("/metrics").text
    assert 'slipway_feature_rows_total{model="fraud",source="transactions"} 1.0' in metrics
    assert "slipway_feature_event_age_seconds_bucket" in metrics


def test_bad_events_get_a_422_naming_every_problem(client):
    """Events without an id, key or a readable time, or of an unknown source, are refused."""
    bad = {"source": "transactions", "events": [{"card_id": "a", "ts": "2026-01-01T00:00:00Z"},
           {"event_id": "y", "ts": "not a time", "card_id": 3.5}]}  # fmt: skip
    answer = client.post("/v1/events", json=bad)
    assert answer.status_code == 422
    got = {(p["row"], p["field"], p["code"]) for p in answer.json()["problems"]}
    assert got == {(0, "event_id", "missing_field"), (1, "card_id", "wrong_type"),
                   (1, "ts", "wrong_type")}  # fmt: skip
    unknown = client.post("/v1/events", json={"source": "nope", "events": [event(1)]})
    assert unknown.status_code == 422 and "No event source named 'nope'" in unknown.text


def test_unknown_entity_gets_defaults_and_missing_key_a_422(client):
    """A never-seen card is answered (and counted); a request without the card is a 422."""
    row = {"card_id": "never", "ts": "2026-02-01T00:00:00Z", "amount": 12.0}
    assert client.post("/v1/models/fraud/predict", json={"instances": [row]}).status_code == 200
    assert 'slipway_feature_missing_entities_total{model="fraud",source="transactions"} 1.0' in (
        client.get("/metrics").text
    )
    del row["card_id"]
    answer = client.post("/v1/models/fraud/predict", json={"instances": [row]})
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["field"] == "card_id"
    for path, body in (
        ("/invocations", {"dataframe_records": [row]}),
        ("/v2/models/fraud/infer", {"inputs": [
            {"name": "amount", "shape": [1], "datatype": "FP64", "data": [12.0]},
            {"name": "ts", "shape": [1], "datatype": "BYTES", "data": ["2026-02-01T00:00:00Z"]},
        ]}),
    ):  # fmt: skip
        assert client.post(path, json=body).status_code == 422, path


def test_v2_and_invocations_enrich_like_v1(client):
    """The same transaction gets the same probability on /v1, /invocations and /v2."""
    row = {"card_id": "c001", "ts": "2026-02-20T08:00:00Z", "amount": 55.5}
    v1 = client.post("/v1/models/fraud/predict", json={"instances": [row]}).json()
    mlflow = client.post("/invocations", json={"dataframe_records": [row]}).json()
    v2 = client.post("/v2/models/fraud/infer", json={"inputs": [
        {"name": "amount", "shape": [1], "datatype": "FP64", "data": [55.5]},
        {"name": "card_id", "shape": [1], "datatype": "BYTES", "data": ["c001"]},
        {"name": "ts", "shape": [1], "datatype": "BYTES", "data": ["2026-02-20T08:00:00Z"]},
    ]}).json()  # fmt: skip
    p1 = v1["predictions"][0]["probabilities"]["1"]
    p2 = next(o for o in v2["outputs"] if o["name"] == "probabilities")["data"][1]
    assert mlflow["predictions"][0] == v1["predictions"][0]["label"]
    assert abs(p1 - p2) < 1e-12


@pytest.mark.parametrize("threads", [2, 0])
def test_enrichment_never_runs_on_the_event_loop(registry, feature_model, monkeypatch, threads):
    """With SERVE_FEATURE_LOOP_MS=0 every protocol enriches in the inference threads (asyncio's
    default executor when SERVE_INFERENCE_THREADS is 0), a one-row request too, and the log
    keeps the features."""
    from slipway.features.online import OnlineFeatures

    feature_model(registry, n=1500)
    on_loop: list[bool] = []
    enrich = OnlineFeatures.enrich

    def watched(self, checked):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return enrich(self, checked)

    monkeypatch.setattr(OnlineFeatures, "enrich", watched)
    token = KeyStore(registry.store).create("k", "predict")[1]
    settings = registry.settings.model_copy(
        update={"serve_inference_threads": threads, "serve_feature_loop_ms": 0.0}
    )
    row = {"card_id": "c001", "ts": "2026-02-20T08:00:00Z", "amount": 55.5}
    with TestClient(create_app(settings, registry=registry)) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        one = c.post("/v1/models/fraud/predict", json={"instances": [row]})
        many = c.post("/v1/models/fraud/predict", json={"instances": [row] * 300})
        mlflow = c.post("/invocations", json={"dataframe_records": [row]})
        v2 = c.post("/v2/models/fraud/infer", json={"inputs": [
            {"name": "amount", "shape": [1], "datatype": "FP64", "data": [55.5]},
            {"name": "card_id", "shape": [1], "datatype": "BYTES", "data": ["c001"]},
            {"name": "ts", "shape": [1], "datatype": "BYTES", "data": [row["ts"]]},
        ]})  # fmt: skip
    assert [r.status_code for r in (one, many, mlflow, v2)] == [200] * 4
    assert on_loop and not any(on_loop), on_loop
    pid = one.json()["predictions"][0]["prediction_id"]
    logged = logged_inputs(registry.store, [pid])[pid]
    assert logged["amount"] == 55.5 and "txn_count_30d" in logged


class StepClock:
    """A CPU clock that advances ``step`` seconds each time it is read: every measured call
    costs ``step``."""

    def __init__(self, step: float) -> None:
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def where_enriched(monkeypatch) -> list[str]:
    """Record, for each enrichment from now on, whether it ran on an event loop or a thread."""
    from slipway.features.online import OnlineFeatures

    seen: list[str] = []
    enrich = OnlineFeatures.enrich

    def watched(self, checked):
        try:
            asyncio.get_running_loop()
            seen.append("loop")
        except RuntimeError:
            seen.append("thread")
        return enrich(self, checked)

    monkeypatch.setattr(OnlineFeatures, "enrich", watched)
    return seen


def answer_in_turns(batcher, served, batches):
    """Answer each list of requests in a turn of its own, one list after the other."""
    from slipway.serving.routing import Route

    async def go():
        out = []
        for rows in batches:
            calls = [batcher.answer(Route(served), r, scope={}) for r in rows]
            out += await asyncio.gather(*calls)
        return out

    return asyncio.run(go())


@pytest.mark.parametrize("record", [False, True], ids=["reads", "records"])
def test_cheap_small_enrichment_answers_on_the_loop_once_measured(
    registry, feature_model, monkeypatch, record
):
    """A version's first call is measured in the pool; while its calls cost at most
    SERVE_FEATURE_LOOP_MS its calls of at most SERVE_FEATURE_LOOP_ROWS rows answer on the loop,
    with the answers of the pool; larger calls, costly versions, PostgreSQL and recording
    versions never."""
    from concurrent.futures import ThreadPoolExecutor

    from slipway.serving.batching import MicroBatcher

    fm = feature_model(registry, n=1500, **({"record_events": True} if record else {}))
    rows = requests(fm.events.sample(6, random_state=2))
    KeyStore(registry.store).create("k", "predict")
    app = create_app(registry.settings, registry=registry)
    with TestClient(app):
        service = app.state.service
        served = service.runtime.get("fraud")
        local = registry.store.dialect == "sqlite" and not record
        assert served.model.enricher.local_reads is local
        seen = where_enriched(monkeypatch)
        with ThreadPoolExecutor(2) as pool:
            new = {"pool": pool, "feature_loop_rows": 8, "feature_loop_ms": 1.0}
            cheap = MicroBatcher(service.answerer, cpu_clock=StepClock(0.0009), **new)
            turns = [[rows[:1]], [rows[1:2]], [rows[2:4], rows[4:5]], [rows * 2]]
            got = answer_in_turns(cheap, served, turns)
            costly = MicroBatcher(service.answerer, cpu_clock=StepClock(0.0011), **new)
            answer_in_turns(costly, served, turns[:2])
        if not record:  # recorded requests are events: a second answer would differ
            pooled = MicroBatcher(service.answerer, feature_loop_ms=0.0)
            again = answer_in_turns(pooled, served, turns)
            assert [a.outputs for a in got] == [a.outputs for a in again]
    on = "loop" if local else "thread"
    # cheap: the first call in the pool, then one row, two requests merged; 12 rows: the pool
    assert seen[:4] == ["thread", on, on, "thread"]
    assert seen[4:6] == ["thread", "thread"]  # costly: 1.1 ms a call


@pytest.mark.slow
def test_real_server_takes_events_and_predicts_with_them(registry, feature_model, tmp_path):
    """`slipway serve`: events posted over HTTP change the next prediction's features."""
    fm = feature_model(registry, n=1500)
    token = KeyStore(registry.store).create("e2e", "predict")[1]
    headers = {"Authorization": f"Bearer {token}"}
    env = subprocess_env(registry.settings)
    with ServerProcess(["--model", "fraud"], env=env, log_dir=tmp_path / "srv") as server:
        row = requests(fm.events.head(1).assign(card_id="fresh", ts=START.replace(month=3)))[0]
        before = httpx.post(server.url + "/v1/models/fraud/predict",
                            json={"instances": [row]}, headers=headers).json()  # fmt: skip
        body = {"source": "transactions", "events": [
            {"event_id": f"r{i}", "card_id": "fresh", "ts": f"2026-02-28T0{i}:00:00Z",
             "amount": 500.0} for i in range(3)]}  # fmt: skip
        posted = httpx.post(server.url + "/v1/events", json=body, headers=headers)
        assert posted.status_code == 200 and posted.json()["inserted"] == 3
        after = httpx.post(server.url + "/v1/models/fraud/predict",
                           json={"instances": [row]}, headers=headers).json()  # fmt: skip
    p_before = before["predictions"][0]["probabilities"]["1"]
    p_after = after["predictions"][0]["probabilities"]["1"]
    assert p_before != p_after
    from slipway.features.audit import audit

    # the first answer was served before these earlier-dated events existed: late data is
    # skew too (training would have counted them), and the audit says so for that row only
    report = audit(registry.store, "fraud", lambda v: registry.get(f"fraud:{v}"))
    counts = next(f for f in report.features if f.name == "txn_count_30d")
    assert report.rows == 2 and counts.mismatches == 1
    assert counts.examples[0]["served"] == 0 and counts.examples[0]["offline"] == 3


def test_a_nul_character_in_keys_is_a_422_on_every_store(client):
    """PostgreSQL cannot store or compare text with NUL: an entity key or event id holding one
    is refused naming the field, on SQLite too (the same request, the same answer)."""
    bad = {"source": "transactions", "events": [event(1, card="c\x00"), event(2)]}
    bad["events"][1]["event_id"] = "x\x002"
    answer = client.post("/v1/events", json=bad)
    assert answer.status_code == 422, answer.text
    got = {(p["row"], p["field"]) for p in answer.json()["problems"]}
    assert got == {(0, "card_id"), (1, "event_id")}
    assert "NUL" in answer.text
    row = {"card_id": "c\x00", "ts": "2026-02-01T00:00:00Z", "amount": 12.0}
    predicted = client.post("/v1/models/fraud/predict", json={"instances": [row]})
    assert predicted.status_code == 422, predicted.text
    assert predicted.json()["problems"][0]["field"] == "card_id"


def test_events_need_numbers_where_an_aggregate_reads_numbers(client, registry):
    """``amount`` is averaged and maxed: text, a boolean or a numeric string there is refused
    (one stored would fail every later prediction of its card); null and other columns pass."""
    bad = [dict(event(i), amount=v) for i, v in enumerate(["NaN", True, "12"], start=1)]
    answer = client.post("/v1/events", json={"source": "transactions", "events": bad})
    assert answer.status_code == 422, answer.text
    got = {(p["row"], p["field"], p["code"]) for p in answer.json()["problems"]}
    assert got == {(0, "amount", "wrong_type"), (1, "amount", "wrong_type"),
                   (2, "amount", "wrong_type")}  # fmt: skip
    assert "a number or null" in answer.text
    fine = [dict(event(4), amount=None), dict(event(5), merchant="travel"), event(6)]
    answer = client.post("/v1/events", json={"source": "transactions", "events": fine})
    assert answer.status_code == 200 and answer.json()["inserted"] == 3
    row = {"card_id": "c_new", "ts": "2026-03-11T12:00:00Z", "amount": 40.0}
    assert client.post("/v1/models/fraud/predict", json={"instances": [row]}).status_code == 200
