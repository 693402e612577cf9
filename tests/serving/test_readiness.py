"""Readiness per model, a database outage, dead background threads, short public reasons."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import sqlalchemy as sa

from slipway.registry import Registry
from tests.serving.test_ops import metric


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (the watcher runs every 0.1 s in these tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def corrupt(registry: Registry, ref: str) -> str:
    """Overwrite a version's model artifact with other bytes; its path."""
    path = registry.artifacts.path(registry.get(ref).sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"not the model that was registered")
    return str(path)


def add_broken(h, make_fitted, name: str = "prices") -> str:
    """Register ``name``, corrupt its artifact, then promote it; wait until its load failed."""
    fitted = make_fitted("regressor")
    h.registry.register(fitted.pipeline, name, fitted.X_train, fitted.y_train)
    path = corrupt(h.registry, f"{name}:1")
    h.registry.promote(name, 1)
    wait_for(lambda: name in h.service.runtime.failures)
    return path


def test_a_broken_model_leaves_the_others_served_and_ready(serve, make_fitted):
    """One production version that fails to load: the others stay ready; it is listed, why."""
    h = serve(models=("fraud",))
    path = add_broken(h, make_fitted)
    r = h.client.get("/ready")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ready" and body["models"] == {"fraud": 1}
    assert body["readiness"]["fraud"] == {"ready": True, "version": 1}
    prices = body["readiness"]["prices"]
    assert prices["ready"] is False and prices["version"] is None
    assert "integrity check" in prices["reason"] and "version 1 failed to load" in prices["reason"]
    assert any(w.startswith("not ready: prices") for w in body["warnings"])
    # No key is needed for /ready, so it never shows a file path or the raw error.
    assert path not in r.text and "sha256" not in r.text and str(h.settings.home) not in r.text
    assert h.post("/v1/models/fraud/predict", {"instances": h.rows("fraud", 2)}).status_code == 200
    assert h.client.get("/v2/health/ready").status_code == 200
    assert h.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}


def test_predicting_with_a_model_that_failed_to_load_says_why(serve, make_fitted):
    """503 model_not_ready naming the version and the reason, with Retry-After, everywhere."""
    h = serve(models=("fraud",))
    add_broken(h, make_fitted)
    r = h.post("/v1/models/prices/predict", {"features": {"amount": 1.0, "hour": 3}})
    body = r.json()
    assert r.status_code == 503 and body["code"] == "model_not_ready"
    assert "production version 1 failed to load" in body["error"]
    assert "integrity check" in body["error"] and "unalias prices production" in body["error"]
    assert "a model is served when it has a" not in body["error"]
    assert int(r.headers["Retry-After"]) >= 1
    v2 = h.get("/v2/models/prices/ready")
    assert v2.status_code == 503 and "failed to load" in v2.json()["error"]
    assert h.post("/invocations?model=prices", {"instances": [[1.0, 3]]}).status_code == 503
    assert h.get("/v2/models/nothing/ready").status_code == 404


def test_require_all_is_not_ready_while_any_model_fails(serve, make_fitted):
    """SLIPWAY_SERVE_REQUIRE_ALL: one broken model makes the worker not ready, naming it."""
    h = serve(models=("fraud",), serve_require_all=True)
    assert h.client.get("/ready").status_code == 200
    add_broken(h, make_fitted)
    r = h.client.get("/ready")
    body = r.json()
    assert r.status_code == 503 and body["code"] == "not_ready" and body["status"] == "not_ready"
    assert "prices: production version 1 failed to load" in body["error"]
    assert body["models"] == {"fraud": 1} and body["readiness"]["prices"]["ready"] is False
    v2 = h.client.get("/v2/health/ready")
    assert v2.status_code == 503 and "prices" in v2.json()["error"]


def test_unalias_removes_a_broken_model_from_serving_and_readiness(serve, make_fitted):
    """`unalias NAME production` is the way out: the model stops being expected and served."""
    h = serve(models=("fraud",), serve_require_all=True)
    add_broken(h, make_fitted)
    assert h.client.get("/ready").status_code == 503
    assert h.registry.unalias("prices", "production") == 1
    wait_for(lambda: h.client.get("/ready").status_code == 200)
    assert set(h.client.get("/ready").json()["readiness"]) == {"fraud"}
    r = h.post("/v1/models/prices/predict", {"features": {"amount": 1.0, "hour": 3}})
    assert r.status_code == 404
    event = h.registry.audit("prices", limit=1)[0]
    assert (event.action, event.alias, event.from_version) == ("unalias", "production", 1)


def test_a_database_outage_keeps_serving_and_answers_503_where_it_is_needed(harness, caplog):
    """Predictions and /ready carry on; feedback and batch lookups are 503 + Retry-After."""
    store = harness.registry.store
    engine = store.engine
    ids = [
        p["prediction_id"]
        for p in harness.post(
            "/v1/models/fraud/predict", {"instances": harness.rows("fraud", 2)}
        ).json()["predictions"]
    ]
    harness.service.log.flush()
    store.engine = sa.create_engine("postgresql+psycopg://u:p@127.0.0.1:1/down")
    try:
        wait_for(lambda: harness.client.get("/ready").json()["database"] == "unreachable")
        with caplog.at_level(logging.INFO, logger="slipway"):
            ready = harness.client.get("/ready")
            predicted = harness.post(
                "/v1/models/fraud/predict", {"instances": harness.rows("fraud", 3)}
            )
            feedback = harness.post(
                "/v1/feedback", {"feedback": [{"prediction_id": ids[0], "label": 1}]}
            )
            lookup = harness.get("/v1/models/fraud/predictions/c1")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert any("database is unreachable" in w for w in ready.json()["warnings"])
        assert predicted.status_code == 200
        for r in (feedback, lookup):
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "database_unavailable" and r.headers["Retry-After"] == "5"
            assert "127.0.0.1" not in r.text and "psycopg" not in r.text
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        assert not [rec for rec in caplog.records if rec.exc_info]
    finally:
        store.engine = engine
    wait_for(lambda: harness.client.get("/ready").json()["database"] == "ok")
    body = {"feedback": [{"prediction_id": ids[0], "label": 1}]}
    assert harness.post("/v1/feedback", body).json()["accepted"] == 1


def test_a_dead_log_writer_makes_the_worker_not_ready_and_shows_in_metrics(harness):
    """A background thread that dies (here the log writer) turns /ready 503 and its gauge 0."""
    log = harness.service.log
    assert metric(harness.get("/metrics").text, "slipway_background_thread_alive",
                  thread="prediction_log") == 1  # fmt: skip
    log.flush_seconds = (
        1e308  # what SLIPWAY_SERVE_LOG_FLUSH_SECONDS=1e308 did before it was bounded
    )
    harness.post("/v1/models/fraud/predict", {"instances": harness.rows("fraud", 1)})
    wait_for(lambda: not log.alive)
    r = harness.client.get("/ready")
    assert r.status_code == 503 and "prediction-log writer stopped" in r.json()["error"]
    assert harness.client.get("/v2/health/ready").status_code == 503
    text = harness.get("/metrics").text
    assert metric(text, "slipway_background_thread_alive", thread="prediction_log") == 0


def test_dead_key_and_alias_pollers_make_the_worker_not_ready(harness):
    """The key refresher and the alias watcher dying (an infinite poll) are reported too."""
    service = harness.service
    service.keys.poll_seconds = float("inf")
    service.runtime.poll_seconds = float("inf")
    wait_for(lambda: not service.keys.alive and not service.runtime.alive)
    error = harness.client.get("/ready").json()["error"]
    assert "API key refresher stopped" in error and "alias watcher stopped" in error
    text = harness.get("/metrics").text
    assert metric(text, "slipway_background_thread_alive", thread="key_refresher") == 0
    assert metric(text, "slipway_background_thread_alive", thread="alias_watcher") == 0
