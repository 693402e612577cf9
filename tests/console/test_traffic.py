"""Live traffic: log aggregates per bucket and version (both stores), percentiles, the JSON."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from slipway.console import traffic
from slipway.store import Store
from slipway.store.schema import predictions, validation_failures
from slipway.store.traffic import LATENCY_BOUNDS_MS, prediction_buckets, refusal_buckets

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def log_rows(store, rows):
    """Insert prediction-log rows (model, version, created_at, latency_ms)."""
    with store.write() as conn:
        conn.execute(predictions.insert(), [
            {"prediction_id": str(uuid.uuid4()), "created_at": at, "model_name": m, "version": v,
             "inputs": {}, "outputs": {}, "latency_ms": ms}
            for m, v, at, ms in rows
        ])  # fmt: skip


def refusals(store, rows):
    """Insert contract refusals (model, version, created_at, rows)."""
    with store.write() as conn:
        conn.execute(validation_failures.insert(), [
            {"created_at": at, "model_name": m, "version": v, "rows": n, "problems": []}
            for m, v, at, n in rows
        ])  # fmt: skip


@pytest.fixture
def store(settings):
    """A migrated store (SQLite or PostgreSQL)."""
    s = Store(settings.resolved_database_url)
    yield s
    s.dispose()


def test_prediction_buckets_count_rows_and_latency_per_version(store):
    """Counts per (model, version, minute) and latencies at or under each bound match a direct
    count of the inserted rows, on both stores."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(400):
        at = NOW - timedelta(seconds=float(rng.uniform(0, 300)))
        rows.append(("fraud", int(rng.integers(1, 3)), at, float(rng.lognormal(0, 1.5))))
    rows.append(("fraud", 1, NOW - timedelta(hours=2), 1.0))  # outside the range
    rows.append(("other", 1, NOW - timedelta(seconds=5), 1.0))
    log_rows(store, rows)
    start, end = NOW - timedelta(minutes=10), NOW + timedelta(minutes=1)
    got = {(b.model, b.version, b.start): b for b in prediction_buckets(store, start, end, 60)}
    expected: dict = {}
    for m, v, at, ms in rows:
        if not start <= at < end:
            continue
        minute = at.replace(second=0, microsecond=0)
        expected.setdefault((m, v, minute), []).append(ms)
    assert set(got) == set(expected)
    for key, latencies in expected.items():
        b = got[key]
        assert b.predictions == len(latencies)
        assert b.at_most == tuple(
            sum(ms <= bound for ms in latencies) for bound in LATENCY_BOUNDS_MS
        )
    only = prediction_buckets(store, start, end, 60, models=["other"])
    assert [(b.model, b.predictions) for b in only] == [("other", 1)]


def test_refusal_buckets_count_requests_and_rows(store):
    """Refusals per bucket: requests and the rows they carried."""
    refusals(store, [("fraud", 1, NOW - timedelta(seconds=10), 3),
                     ("fraud", 1, NOW - timedelta(seconds=20), 2),
                     ("fraud", 2, NOW - timedelta(minutes=3), 1)])  # fmt: skip
    got = refusal_buckets(store, NOW - timedelta(hours=1), NOW + timedelta(minutes=1), 60)
    summary = sorted((b.version, b.start.minute, b.requests, b.rows) for b in got)
    assert summary == [(1, 0, 2, 5), (2, 57, 1, 1)]


def test_quantile_interpolates_within_the_bucket_as_prometheus_does():
    """Known counts: the median falls halfway into its bucket; beyond the last bound is capped."""
    bounds = (1.0, 2.0, 4.0)
    assert traffic.quantile(0.5, bounds, (0, 10, 10), 10) == pytest.approx(1.5)
    assert traffic.quantile(0.25, bounds, (5, 10, 10), 10) == pytest.approx(0.5)
    assert traffic.quantile(0.99, bounds, (0, 0, 5), 10) == 4.0
    assert np.isnan(traffic.quantile(0.5, bounds, (0, 0, 0), 0))


def test_quantile_is_close_to_the_exact_percentile_on_real_latencies():
    """On 10,000 lognormal latencies the interpolated p50/p99 land in the right bucket."""
    rng = np.random.default_rng(1)
    ms = rng.lognormal(1, 1, 10_000)
    at_most = [int((ms <= b).sum()) for b in LATENCY_BOUNDS_MS]
    for q in (0.5, 0.99):
        exact = float(np.quantile(ms, q))
        got = traffic.quantile(q, LATENCY_BOUNDS_MS, at_most, len(ms))
        i = int(np.searchsorted(LATENCY_BOUNDS_MS, exact))
        low = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
        assert low <= got <= LATENCY_BOUNDS_MS[i]


def test_history_puts_every_version_on_one_grid(ui_any):
    """The JSON grid covers the window; rates are per second, shares of rows refused."""
    store = ui_any.registry.store
    log_rows(store, [("fraud", 1, NOW - timedelta(seconds=s), 2.0) for s in range(30)])
    refusals(store, [("fraud", 1, NOW - timedelta(seconds=1), 10)])
    data = traffic.history(ui_any.service, "1h", now=NOW)
    assert len(data["x"]) == 60 and data["step"] == 60
    v1 = data["models"]["fraud"]["1"]
    i = data["x"].index(int(NOW.replace(second=0).timestamp()))
    assert v1["predictions_per_s"][i] == pytest.approx(30 / 60)
    assert v1["refused_per_s"][i] == pytest.approx(1 / 60)
    assert v1["refused_share"][i] == pytest.approx(10 / 40)
    # all 30 at 2.0 ms, in the (1, 2.5] bucket: the interpolated median is its middle
    assert v1["p50_ms"][i] == pytest.approx(1.75)
    assert v1["predictions_per_s"][i - 5] == 0 and v1["p50_ms"][i - 5] is None


def test_traffic_json_follows_real_requests(ui):
    """After predictions and a refusal over HTTP, the JSON shows them per version, and the
    server counters count them."""
    auth = {"Authorization": f"Bearer {ui.keys['predict']}"}
    rows = ui.fitted.X_val.iloc[:5].to_dict("records")
    ui.client.post("/v1/models/fraud/predict", json={"instances": rows}, headers=auth)
    bad = ui.client.post(
        "/v1/models/fraud/predict", json={"features": {"amount": "x"}}, headers=auth
    )
    assert bad.status_code == 422
    ui.service.log.flush()
    ui.login()
    data = ui.client.get("/ui/api/traffic").json()
    assert data["window"] == "1h" and data["server"]["requests"] >= 2
    v1 = data["models"]["fraud"]["1"]
    assert sum(v1["predictions_per_s"]) * 60 == pytest.approx(5)
    assert sum(x or 0 for x in v1["refused_per_s"]) * 60 == pytest.approx(1)
    counters = data["server"]["versions"]["fraud:1"]
    assert (counters["ok"], counters["invalid"]) == (1, 1)
    assert counters["count"] == 1 and counters["at_most"][-1] <= 1


def test_traffic_json_errors_are_json(ui):
    """The polled endpoint answers JSON errors: 401 logged out, 422 for an unknown window."""
    answer = ui.client.get("/ui/api/traffic")
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    ui.login()
    answer = ui.client.get("/ui/api/traffic?window=2h")
    assert answer.status_code == 422 and "window '2h'" in answer.json()["error"]
