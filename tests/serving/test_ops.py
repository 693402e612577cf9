"""Models, health, readiness, metrics, OpenAPI, batch lookups and JSON errors everywhere."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from slipway.clock import utcnow
from slipway.serving.docs import docs_hint
from slipway.store.schema import batch_predictions


def test_models_list_and_describe_with_contract_schema(serve):
    """GET /v1/models lists served versions; /v1/models/{name} has metrics and JSON Schema."""
    h = serve(models=("fraud", "prices"))
    listed = h.get("/v1/models").json()["models"]
    assert [(m["name"], m["version"]) for m in listed] == [("fraud", 1), ("prices", 1)]
    body = h.get("/v1/models/fraud").json()
    mv = h.registry.get("fraud:1")
    assert body["metrics"] == mv.metrics and body["sha256"] == mv.sha256
    assert body["input_schema"] == mv.contract.json_schema()
    assert body["example"] == mv.contract.example() and body["classes"] == [0, 1]


def test_ready_is_503_while_no_model_serves(serve):
    """A server with nothing to serve is live but not ready."""
    h = serve(models=())
    assert h.client.get("/health").status_code == 200
    r = h.client.get("/ready")
    assert r.status_code == 503 and "production" in r.json()["error"]
    assert h.client.get("/v2/health/ready").status_code == 503


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text."""
    for line in text.splitlines():
        sample = line.startswith(name + "{") or line.startswith(name + " ")
        if sample and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def test_metrics_count_requests_predictions_failures_log_and_loads(harness):
    """Prometheus text with per-model-version counters, latency, log depth and model loads."""
    rows = harness.rows("fraud", 3)
    harness.post("/v1/models/fraud/predict", {"instances": rows})
    harness.post("/v1/models/fraud/predict", {"instances": [{"amount": "x"}]})
    harness.service.log.flush()
    text = harness.get("/metrics").text
    assert metric(text, "slipway_predictions_total", model="fraud", version="1") == 3
    assert metric(text, "slipway_validation_failures_total", model="fraud", version="1") == 1
    assert metric(text, "slipway_model_requests_total", outcome="ok") == 1
    assert metric(text, "slipway_model_request_duration_seconds_count", model="fraud") == 1
    assert (
        metric(text, "slipway_http_requests_total", route="/v1/models/{name}/predict", status="422")
        == 1
    )
    assert metric(text, "slipway_model_loads_total", model="fraud", outcome="ok") == 1
    assert metric(text, "slipway_prediction_log_queue_depth") == 0
    assert metric(text, "slipway_prediction_log_written_total") == 3
    assert metric(text, "slipway_serving_version", model="fraud") == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("DELETE", "/v1/models", 405),
        ("GET", "/v1/feedback", 405),
        ("GET", "/v2/nowhere", 404),
    ],
)
def test_http_errors_are_json_too(harness, method, path, status):
    """Unknown routes and methods answer JSON errors, /v2 ones in the protocol's shape."""
    r = harness.client.request(method, path, headers=harness.auth())
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body["error"], str)
    assert (set(body) == {"error"}) == path.startswith("/v2")


def test_openapi_documents_bodies_with_examples_from_each_contract(serve):
    """Each served model has an example on the generic path and a concrete path of its own."""
    h = serve(models=("fraud", "grid"))
    doc = h.get("/openapi.json").json()
    generic = doc["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]
    examples = generic["content"]["application/json"]["examples"]
    fraud = h.registry.get("fraud").contract
    assert examples["fraud"]["value"] == {"instances": [fraud.example()]}
    concrete = doc["paths"]["/v1/models/fraud/predict"]["post"]
    schema = concrete["requestBody"]["content"]["application/json"]["schema"]
    assert schema["oneOf"][0]["properties"]["instances"]["items"] == fraud.json_schema()
    assert (
        "grid"
        in doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"][
            "application/json"
        ]["examples"]
    )
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert {"bearer", "apiKey"} <= set(doc["components"]["securitySchemes"])
    example = examples["fraud"]["value"]
    assert h.post("/v1/models/fraud/predict", example).status_code == 200
    assert h.get("/docs").status_code == 200


def test_public_docs_setting_opens_docs_only(serve):
    """serve_public_docs opens /docs, /redoc, their assets and /openapi.json, nothing else."""
    h = serve(serve_public_docs=True)
    assert h.client.get("/openapi.json").status_code == 200
    assert h.client.get("/v1/models").status_code == 401
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/docs/static/swagger-ui.css"):
        assert h.client.get(path).status_code == 200, path


def test_docs_pages_load_every_asset_from_the_server_itself(serve):
    """/docs and /redoc reference no other host (no CDN, no Google Fonts), and every asset
    they reference is served, with its content type."""
    h = serve(serve_public_docs=True)
    for page in ("/docs", "/redoc"):
        html = h.client.get(page).text
        assert "http://" not in html.replace("http://www.w3.org", "")
        assert "https://" not in html and "//cdn" not in html, page
        refs = re.findall(r'(?:src|href)="(/[^"]+)"', html)
        assert refs and all(r.startswith("/docs/static/") for r in refs), refs
        for ref in refs:
            r = h.client.get(ref)
            assert r.status_code == 200 and len(r.content) > 1000, ref
    css = h.client.get("/docs/static/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    assert h.client.get("/docs/static/nothing.js").status_code == 401  # only the assets open
    assert h.get("/docs/static/nothing.js").status_code == 404


def test_serve_says_where_the_docs_are_and_how_to_open_them():
    """The start line names /docs; with keys on and docs not public it names the setting."""
    open_ = docs_hint("http://h:1", auth=True, public_docs=True)
    assert open_.startswith("API docs on http://h:1/docs and http://h:1/redoc")
    assert docs_hint("http://h:1", auth=False, public_docs=False) == open_
    closed = docs_hint("http://h:1", auth=True, public_docs=False)
    assert "SLIPWAY_SERVE_PUBLIC_DOCS=true" in closed and "X-API-Key" in closed


def test_batch_prediction_lookup_returns_the_latest_row(serve, settings):
    """GET /v1/models/{name}/predictions/{key}: newest scored_at wins; 404 names the key."""
    harness = serve(settings=settings)
    now = utcnow()
    rows = [
        dict(
            run_id="r1",
            key="c1",
            model_name="fraud",
            version=1,
            sha256="a" * 64,
            label=0,
            probabilities={"0": 0.9, "1": 0.1},
            value=None,
            scored_at=now - timedelta(days=1),
        ),
        dict(
            run_id="r2",
            key="c1",
            model_name="fraud",
            version=2,
            sha256="b" * 64,
            label=1,
            probabilities={"0": 0.2, "1": 0.8},
            value=None,
            scored_at=now,
        ),
        dict(
            run_id="r3",
            key="c1",
            model_name="other",
            version=1,
            sha256="c" * 64,
            label=None,
            probabilities=None,
            value=3.5,
            scored_at=now + timedelta(days=1),
        ),
    ]
    with harness.registry.store.write() as conn:
        conn.execute(batch_predictions.insert(), rows)
    body = harness.get("/v1/models/fraud/predictions/c1").json()
    assert body == {
        "model": "fraud",
        "key": "c1",
        "version": 2,
        "run_id": "r2",
        "scored_at": now.isoformat(),
        "label": 1,
        "probabilities": {"0": 0.2, "1": 0.8},
    }
    # "other" has batch rows but is not served here: answered as if it did not exist.
    other = harness.get("/v1/models/other/predictions/c1")
    assert other.status_code == 404 and "not served here" in other.json()["error"]
    missing = harness.get("/v1/models/fraud/predictions/zz")
    assert missing.status_code == 404 and "'zz'" in missing.json()["error"]


def test_unknown_methods_cannot_mint_metric_series(harness):
    """Arbitrary HTTP methods are counted under method="OTHER"."""
    harness.client.request("BREW", "/v1/models", headers=harness.auth())
    text = harness.get("/metrics").text
    assert 'method="OTHER"' in text and "BREW" not in text


def test_client_disconnect_is_logged_as_499_not_as_an_error(harness, caplog):
    """A client leaving mid-body is an access-log 499, with no error logged."""
    import asyncio
    import json
    import logging

    app = harness.client.app
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/models/fraud/predict",
        "raw_path": b"/v1/models/fraud/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {harness.keys['predict']}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
        "scheme": "http",
        "http_version": "1.1",
        "state": {},
    }
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="slipway"):
        asyncio.run(app(scope, receive, send))
    lines = [json.loads(r.message) for r in caplog.records if r.name == "slipway.access"]
    assert lines[-1]["status"] == 499 and sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_monitoring_route_serves_the_latest_stored_report(serve, settings):
    """GET /v1/models/{name}/monitoring: 404 before the first run, then the newest report."""
    from slipway.monitoring.runner import Monitor

    harness = serve(settings=settings)
    before = harness.get("/v1/models/fraud/monitoring")
    assert before.status_code == 404 and "slipway monitor fraud" in before.json()["error"]
    rows = harness.rows("fraud", 5)
    assert harness.post("/v1/models/fraud/predict", {"instances": rows}).status_code == 200
    harness.service.log.flush()
    report = Monitor(harness.registry, sinks=[]).run("fraud", since=timedelta(hours=1))
    body = harness.get("/v1/models/fraud/monitoring").json()
    assert body["status"] == report.status
    assert body == Monitor(harness.registry, sinks=[]).latest("fraud")
    assert harness.get("/v1/models/ghost/monitoring").status_code == 404


def test_model_detail_names_the_backend_and_its_evidence(harness):
    """The ONNX verdict recorded at registration is visible in GET /v1/models/{name}."""
    body = harness.get("/v1/models/fraud").json()
    assert body["backend"] == "onnx" and harness.service.runtime.get("fraud").model.engine.session
    assert body["backend_check"]["accepted"] is True
    assert body["backend_check"]["max_abs_diff"] < 1e-5


def test_sklearn_backend_setting_serves_without_onnx(serve):
    """SLIPWAY_SERVE_BACKEND=sklearn keeps scikit-learn answering."""
    h = serve(serve_backend="sklearn")
    assert h.get("/v1/models/fraud").json()["backend"] == "sklearn"


def test_model_scoped_routes_answer_only_for_the_served_models(serve, settings, make_fitted):
    """With serve_models=("fraud",), another registered model's stored monitoring report and
    batch predictions are not served, and its name answers exactly like a missing one."""
    from slipway.monitoring.runner import Monitor

    harness = serve(settings=settings.model_copy(update={"serve_models": ("fraud",)}))
    fitted = make_fitted("regressor")
    harness.registry.register(fitted.pipeline, "internal", fitted.X_train, fitted.y_train)
    harness.registry.promote("internal", 1)
    Monitor(harness.registry, sinks=[]).run("internal", since=timedelta(hours=1))
    assert Monitor(harness.registry, sinks=[]).latest("internal") is not None
    with harness.registry.store.write() as conn:
        conn.execute(
            batch_predictions.insert(),
            [
                dict(
                    run_id="r1",
                    key="k1",
                    model_name="internal",
                    version=1,
                    sha256="c" * 64,
                    label=None,
                    probabilities=None,
                    value=3.5,
                    scored_at=utcnow(),
                )
            ],
        )

    def answer(name: str, route: str) -> tuple[int, str, str]:
        r = harness.get(route.format(name))
        return r.status_code, r.json()["code"], r.json()["error"].replace(name, "NAME")

    for route in ("/v1/models/{}/monitoring", "/v1/models/{}/predictions/k1"):
        internal = answer("internal", route)
        assert internal[0] == 404 and "not served here" in internal[2]
        assert internal == answer("ghost", route)
