"""Experiments in a running service: sticky arms named in answers and logs, shadow answers
logged beside the primary ones without touching them, guardrails, and the /v1/experiments
routes."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from slipway.store import experiments as book
from slipway.store.schema import predictions
from tests.experiments.helpers import SWITCH

# Two shared cores make model times jumpy: tests not about the latency guardrail loosen it.
LOOSE = {"max_p99_increase_ms": 60_000.0}


def start(h, **body):
    """Start an experiment over HTTP (admin key) and let the policy pick it up now."""
    body.setdefault("guardrails", LOOSE)
    r = h.post("/v1/experiments", {"model": "fraud", "candidate": 2, **body}, role="admin")
    assert r.status_code == 201, r.text
    h.service.runtime.policy.check()
    return r.json()


def logged(h, ids):
    """The log rows of some predictions, by id."""
    assert h.service.log.flush()
    with h.registry.store.read() as conn:
        query = sa.select(predictions).where(predictions.c.prediction_id.in_(ids))
        return {r.prediction_id: r for r in conn.execute(query)}


def metric(h, line_start: str) -> float:
    """The value of the first /metrics line starting with ``line_start`` (0 when absent)."""
    for line in h.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_ab_units_keep_their_arm_and_answers_and_logs_name_it(lab, settings):
    """400 requests from 80 units: each unit gets one arm (and its version) every time, the
    answer names arm and experiment, and the log rows carry arm, experiment and unit."""
    h = lab(settings=settings)
    e = start(h, mode="ab", split=0.5)
    rows = h.rows(40)
    arms: dict[str, set] = {}
    ids = {}
    for i in range(400):
        unit = f"user-{i % 80}"
        r = h.post("/v1/models/fraud/predict", {"features": rows[i % 40], "unit_id": unit})
        body = r.json()
        assert body["experiment"] == e["id"]
        assert body["version"] == (2 if body["arm"] == "treatment" else 1)
        arms.setdefault(unit, set()).add(body["arm"])
        ids[body["predictions"][0]["prediction_id"]] = (unit, body["arm"], body["version"])
    assert all(len(a) == 1 for a in arms.values())
    assert 20 < sum(a == {"treatment"} for a in arms.values()) < 60
    for pid, row in logged(h, list(ids)).items():
        assert (row.unit_id, row.variant, row.version, row.experiment) == (*ids[pid], e["id"])


def test_the_unit_can_come_from_an_input_field(lab):
    """--unit-field merchant: the row's merchant is the unit (one arm per merchant), logged
    as the unit id; V2 and MLflow requests are routed the same way and name the arm."""
    h = lab()
    start(h, mode="ab", split=0.5, unit_field="merchant")
    seen: dict[str, set] = {}
    ids = []
    for row in h.rows(60):
        body = h.post("/v1/models/fraud/predict", {"features": row}).json()
        seen.setdefault(row["merchant"], set()).add(body["arm"])
        ids.append((body["predictions"][0]["prediction_id"], row["merchant"]))
    assert all(len(a) == 1 for a in seen.values()) and len(seen) == 3
    rows = logged(h, [pid for pid, _ in ids])
    assert all(rows[pid].unit_id == merchant for pid, merchant in ids)
    row = h.rows(1)[0]
    mlflow = h.post("/invocations?model=fraud", {"dataframe_records": [row]}).json()
    assert mlflow["arm"] == next(iter(seen[row["merchant"]]))
    assert mlflow["version"] == (2 if mlflow["arm"] == "treatment" else 1)


def test_without_a_unit_each_request_is_assigned_at_random(lab):
    """No unit id and no unit field: both arms answer, roughly at the split."""
    h = lab()
    start(h, mode="ab", split=0.5)
    row = h.rows(1)[0]
    arms = [h.post("/v1/models/fraud/predict", {"features": row}).json()["arm"] for _ in range(200)]
    assert 60 < arms.count("treatment") < 140


def test_shadow_answers_are_production_s_and_the_candidate_s_are_logged(lab):
    """Shadow mode: every answer is production's (arm control), and each log row carries the
    candidate's answer to the same row, equal to what the candidate predicts."""
    h = lab()
    rows = h.rows(20)
    before = h.post("/v1/models/fraud/predict", {"instances": rows}).json()
    e = start(h, mode="shadow")
    during = h.post("/v1/models/fraud/predict", {"instances": rows}).json()
    assert (during["arm"], during["experiment"], during["version"]) == ("control", e["id"], 1)
    strip = [{k: v for k, v in p.items() if k != "prediction_id"} for p in before["predictions"]]
    assert [
        {k: v for k, v in p.items() if k != "prediction_id"} for p in during["predictions"]
    ] == strip
    candidate = h.registry.load("fraud:2").predict_proba(h.fitted.X_val.iloc[:20])
    by_id = logged(h, [p["prediction_id"] for p in during["predictions"]])
    for i, p in enumerate(during["predictions"]):
        row = by_id[p["prediction_id"]]
        assert (row.variant, row.experiment, row.shadow_version) == ("control", e["id"], 2)
        assert row.shadow_outputs["probabilities"]["1"] == pytest.approx(candidate[i, 1], abs=1e-5)
        assert isinstance(row.shadow_outputs["latency_ms"], float)  # recorded, as a number


@pytest.mark.parametrize("mode", ["raise", "sleep:2"])
def test_a_failing_or_slow_shadow_leaves_the_answers_identical(lab, monkeypatch, mode):
    """A shadow that raises on every row, or sleeps 2 s per call: every answer is exactly the
    one production gives alone; once the shadow is failing or stalled its work is dropped at
    submit, and every row is counted once in /metrics (an error, late, or dropped as failing
    or stalled); the log says what happened to the shadow."""
    h = lab(broken=True, serve_shadow_wait_seconds=0.3)
    rows = h.rows(10)
    alone = [h.post("/v1/models/fraud/predict", {"features": r}).json() for r in rows]
    start(h, mode="shadow")
    monkeypatch.setenv(SWITCH, mode)
    shadowed = []
    for group in (rows[:4], rows[4:7], rows[7:]):  # batches apart: the shadow's state moves
        shadowed += [h.post("/v1/models/fraud/predict", {"features": r}).json() for r in group]
        time.sleep(0.5)
    for a, b in zip(alone, shadowed, strict=True):
        assert a["predictions"][0]["probabilities"] == b["predictions"][0]["probabilities"]
        assert b["version"] == 1 and b["arm"] == "control"
    by_id = logged(h, [b["predictions"][0]["prediction_id"] for b in shadowed])
    outs = [r.shadow_outputs for r in by_id.values()]
    assert all(r.shadow_version == 2 for r in by_id.values())
    drop = 'slipway_shadow_dropped_total{model="fraud",reason='
    if mode == "raise":
        errors = [o for o in outs if o is not None]
        assert all("candidate broken on purpose" in o["error"] for o in errors)
        failed = metric(h, 'slipway_shadow_predictions_total{model="fraud",outcome="error"')
        failing = metric(h, drop + '"failing"}')
        assert failed == len(errors) >= 4 and failing >= 1 and failed + failing == 10
    else:  # written after 0.3 s without the shadow answer, which came too late, or dropped
        assert all(o is None for o in outs)
        late, stalled = metric(h, drop + '"late"}'), metric(h, drop + '"stalled"}')
        assert stalled >= 1 and late + stalled == 10


def test_shadow_work_beyond_the_queue_is_dropped_and_counted(lab, monkeypatch):
    """A shadow slower than the traffic fills its queue; further shadow rows are dropped and
    counted in /metrics, never queued without bound, and the answers keep coming."""
    h = lab(broken=True, serve_shadow_queue_rows=3, serve_shadow_wait_seconds=0.2)
    start(h, mode="shadow")
    monkeypatch.setenv(SWITCH, "sleep:1")
    row = h.rows(1)[0]
    codes = [h.post("/v1/models/fraud/predict", {"features": row}).status_code for _ in range(20)]
    assert codes == [200] * 20
    dropped = metric(h, 'slipway_shadow_dropped_total{model="fraud",reason="queue_full"}')
    calls = metric(h, 'slipway_shadow_call_duration_seconds_count{model="fraud"')
    # Each 1 s call takes at most the 3 queued rows; one call may be in flight, 3 rows queued.
    # A slow machine makes more calls during the 20 requests, so the bound counts them.
    assert dropped >= 20 - 3 * (calls + 1) - 3 and dropped >= 1
    assert h.service.answerer.shadow.depth <= 3


def test_starts_and_stops_reach_a_running_server(lab):
    """The watcher follows the store: an experiment started elsewhere gets traffic within a
    poll interval, and after a stop production answers alone again."""
    h = lab()
    row = h.rows(1)[0]
    r = h.post(
        "/v1/experiments", {"model": "fraud", "mode": "shadow", "candidate": 2}, role="admin"
    )
    assert r.status_code == 201
    deadline = time.monotonic() + 10
    while "arm" not in h.post("/v1/models/fraud/predict", {"features": row}).json():
        assert time.monotonic() < deadline, "the experiment never reached the server"
        time.sleep(0.05)
    stop = h.post(f"/v1/experiments/{r.json()['id']}/stop", {"action": "abandon"}, role="admin")
    assert stop.status_code == 200 and stop.json()["experiment"]["decision"] == "abandoned"
    while "arm" in h.post("/v1/models/fraud/predict", {"features": row}).json():
        assert time.monotonic() < deadline, "the stop never reached the server"
        time.sleep(0.05)


def test_a_guardrail_stops_a_failing_treatment_records_why_and_alerts(lab, monkeypatch):
    """A treatment whose every call raises: the failure guardrail stops the test, the stop
    reason is stored, one alert goes out, and production answers every request again."""
    h = lab(broken=True)
    policy = h.service.runtime.policy
    alerts = []
    policy.desk.alert = alerts.append
    policy.guardrail_seconds = 0
    e = start(h, mode="ab", split=0.5)
    monkeypatch.setenv(SWITCH, "raise")
    rows = h.rows(40)
    codes = []
    deadline = time.monotonic() + 30
    while book.get(h.registry.store, e["id"]).running:  # the watcher checks every 0.1 s
        assert time.monotonic() < deadline, "the guardrail never tripped"
        r = h.post("/v1/models/fraud/predict", {"features": rows[0], "unit_id": f"u{len(codes)}"})
        codes.append(r.status_code)
    assert codes.count(500) >= 100  # min_requests treatment requests before it may judge
    stopped = book.get(h.registry.store, e["id"])
    assert (stopped.status, stopped.decision) == ("stopped", "guardrail")
    assert "failures exceeded its bound" in stopped.stop_reason
    while not alerts and time.monotonic() < deadline:  # the watcher alerts right after the stop
        time.sleep(0.01)
    time.sleep(0.2)  # two watcher ticks: a second alert would have arrived by now
    assert len(alerts) == 1 and alerts[0]["status"] == "ALERT"
    assert "failures" in alerts[0]["flagged"] and alerts[0]["run_id"] == e["id"]
    after = [h.post("/v1/models/fraud/predict", {"features": r, "unit_id": "x"}) for r in rows]
    assert {r.status_code for r in after} == {200} and all("arm" not in r.json() for r in after)


def test_experiment_routes_check_keys_and_bodies(lab):
    """Reading takes any key, starting and stopping an admin key; bad bodies are 422 naming
    the problem; unknown ids 404; a second start 409 naming the first."""
    h = lab()
    body = {"model": "fraud", "mode": "ab", "candidate": 2, "split": 0.2}
    assert h.post("/v1/experiments", body).status_code == 403
    assert h.post("/v1/experiments", {**body, "candidate": "2"}, role="admin").status_code == 422
    assert h.post("/v1/experiments", {**body, "color": 1}, role="admin").status_code == 422
    r = h.post("/v1/experiments", {**body, "unit_field": "nope"}, role="admin")
    assert r.status_code == 422 and "fields are amount" in r.json()["error"]
    assert h.post("/v1/experiments", {**body, "model": "nope"}, role="admin").status_code == 404
    first = h.post("/v1/experiments", body, role="admin")
    assert first.status_code == 201
    again = h.post("/v1/experiments", body, role="admin")
    assert again.status_code == 409 and "'fraud-1'" in again.json()["error"]
    listed = h.get("/v1/experiments").json()["experiments"]
    assert [e["id"] for e in listed] == ["fraud-1"]
    report = h.get("/v1/experiments/fraud-1").json()
    assert report["experiment"]["id"] == "fraud-1" and report["verdict"]["code"] == "cannot_trust"
    assert h.get("/v1/experiments/fraud-9").status_code == 404
    stop = {"action": "promote"}
    assert h.post("/v1/experiments/fraud-1/stop", stop).status_code == 403
    promoted = h.post("/v1/experiments/fraud-1/stop", stop, role="admin")
    assert promoted.status_code == 200
    assert h.registry.aliases("fraud") == {"production": 2}
    assert h.post("/v1/experiments/fraud-1/stop", stop, role="admin").status_code == 409


def test_an_assignment_broken_on_purpose_is_caught_by_the_srm_check(lab):
    """A 50/50 test whose assigner is bugged to treat 60% of units: the report cannot trust it
    (sample ratio mismatch), whatever the metric says."""
    h = lab()
    e = start(h, mode="ab", split=0.5)
    h.service.runtime.policy._active["fraud"].assigner.split = 0.6  # the bug
    row = h.rows(1)[0]
    for i in range(1500):
        h.post("/v1/models/fraud/predict", {"features": row, "unit_id": f"user-{i}"})
    assert h.service.log.flush()
    report = h.get(f"/v1/experiments/{e['id']}").json()
    assert not report["srm"]["ok"] and report["srm"]["p_value"] < 0.001
    assert report["verdict"]["code"] == "cannot_trust" and "SRM" in report["verdict"]["text"]


def test_shutdown_with_a_stuck_shadow_neither_hangs_nor_loses_a_row(lab, monkeypatch):
    """Stopping the service while the shadow sleeps 30 s in its call does not wait for it:
    every answered prediction is written (without a shadow answer) and each of its rows is
    counted once, as shadow work dropped at shutdown."""
    h = lab(broken=True, serve_shadow_wait_seconds=60)
    start(h, mode="shadow")
    monkeypatch.setenv(SWITCH, "sleep:30")
    row = h.rows(1)[0]
    ids = [
        h.post("/v1/models/fraud/predict", {"features": row}).json()["predictions"][0][
            "prediction_id"
        ]
        for _ in range(5)
    ]
    metrics = h.service.metrics
    began = time.monotonic()
    h.client.__exit__(None, None, None)  # the lifespan's shutdown, as on SIGTERM
    assert time.monotonic() - began < 20, "shutdown waited for the sleeping shadow"
    by_id = logged_after_stop(h, ids)
    assert sorted(by_id) == sorted(ids)
    assert all(r.shadow_version == 2 and r.shadow_outputs is None for r in by_id.values())
    labels = {"model": "fraud"}
    dropped = metrics.registry.get_sample_value(
        "slipway_shadow_dropped_total", {**labels, "reason": "shutdown"}
    )
    late = metrics.registry.get_sample_value(
        "slipway_shadow_dropped_total", {**labels, "reason": "late"}
    )
    assert dropped == 5 and late is None


def logged_after_stop(h, ids):
    """The log rows of some predictions, by id, read after the service stopped."""
    with h.registry.store.read() as conn:
        query = sa.select(predictions).where(predictions.c.prediction_id.in_(ids))
        return {r.prediction_id: r for r in conn.execute(query)}
