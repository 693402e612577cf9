"""Console pages: each renders what the registry holds, with the security headers, and no secret."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
import sqlalchemy as sa

from slipway.batch.runs import RunLog
from slipway.console.assets import ASSETS
from slipway.keys import hash_token
from slipway.monitoring import Monitor
from slipway.store.schema import api_keys

PAGES = [
    "/ui",
    "/ui/models/fraud",
    "/ui/models/fraud/versions/1",
    "/ui/traffic",
    "/ui/traffic?window=1d",
    "/ui/monitoring",
    "/ui/monitoring/fraud",
    "/ui/batch",
    "/ui/batch?model=fraud",
    "/ui/keys",
    "/ui/models/fraud/promote?version=1",
    "/ui/models/fraud/rollback",
    "/ui/models/fraud/versions/1/archive",
    "/ui/models/fraud/reload",
    "/ui/keys/predict-key/revoke",
]


def charts(html: str) -> list[dict]:
    """The chart specs a page carries in its data-chart attributes."""
    return [json.loads(unescape(m)) for m in re.findall(r"data-chart='([^']*)'", html)]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_the_security_headers(ui, path):
    """Each page answers 200 with a strict CSP, no framing, no sniffing and no caching."""
    ui.login()
    answer = ui.client.get(path)
    assert answer.status_code == 200, answer.text
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", PAGES)
def test_no_page_has_an_inline_script_or_style(ui, path):
    """Scripts and styles come from files only: no <script> body, <style>, style= or on*=."""
    ui.login()
    html = ui.client.get(path).text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)


def test_no_page_or_asset_reveals_a_key_or_its_hash(ui):
    """Neither the plain keys nor their stored sha256 appear on any page, asset or JSON."""
    ui.login()
    with ui.registry.store.read() as conn:
        hashes = list(conn.execute(sa.select(api_keys.c.key_hash)).scalars())
    secrets = [*ui.keys.values(), *hashes, ui.client.cookies.get("slipway_console")]
    bodies = [ui.client.get(p).text for p in [*PAGES, "/ui/api/traffic"]]
    bodies += [ui.client.get(f"/ui/static/{name}").text for name in ASSETS.files]
    for body in bodies:
        for secret in secrets:
            assert secret not in body
    assert hash_token(ui.keys["admin"]) in hashes


def test_models_page_shows_versions_aliases_metrics_backend_and_monitoring(ui):
    """The overview names each model's aliases, production metrics, backend and last verdict."""
    ui.login()
    before = ui.client.get("/ui").text
    assert "no run yet" in before and "production → " in before
    assert "roc_auc" in before or "accuracy" in before
    assert "scikit-learn" in before or "ONNX Runtime" in before
    Monitor(ui.registry, sinks=[]).run("fraud")
    after = ui.client.get("/ui").text
    assert re.search(r'<span class="badge (ok|warn|alert)">(OK|WARN|ALERT)</span>', after)


def test_version_page_is_the_model_card(ui):
    """The card shows metrics, CV, the contract as a table, fingerprint, libraries, lineage."""
    ui.login()
    mv = ui.registry.get("fraud:1")
    html = ui.client.get("/ui/models/fraud/versions/1").text
    for field in mv.contract.names:
        assert f"<td>{field}</td>" in html
    assert mv.meta["training"]["fingerprint"] in html and mv.sha256 in html
    assert f"scikit-learn {mv.meta['env']['scikit-learn']}" in html
    assert "Alias history" in html and "promote" in html
    # what the pipeline handles, and why: the encoder ignores unknown categories
    assert "listed values; others flagged: handled by OneHotEncoder(handle_unknown=" in html
    assert "<td>refused</td>" in html  # nulls: no imputer, none in training


def test_descriptions_are_escaped(make_console, make_fitted):
    """Text from the registry is escaped: a description cannot inject markup."""
    ui = make_console()
    fitted = make_fitted("frame")
    ui.registry.register(fitted.pipeline, "fraud", fitted.X_train, fitted.y_train,
                         description="<script>alert(1)</script>")  # fmt: skip
    ui.login()
    html = ui.client.get("/ui/models/fraud").text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_monitoring_page_plots_distributions_and_performance_with_bands(make_console):
    """After a run with labeled traffic: reference-vs-current bars per feature and prediction,
    and realized performance over time with its interval."""
    # scikit-learn answers: ONNX's float32 probabilities make log_loss warn in monitoring
    ui = make_console(serve_backend="sklearn")
    ui.login()
    rows = ui.fitted.X_val.iloc[:300].to_dict("records")
    auth = {"Authorization": f"Bearer {ui.keys['predict']}"}
    answer = ui.client.post("/v1/models/fraud/predict", json={"instances": rows}, headers=auth)
    ids = [p["prediction_id"] for p in answer.json()["predictions"]]
    labels = [int(y) for y in ui.fitted.y_val[:300]]
    body = {
        "feedback": [{"prediction_id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
    }
    assert ui.client.post("/v1/feedback", json=body, headers=auth).status_code == 200
    Monitor(ui.registry, sinks=[]).run("fraud")
    specs = charts(ui.client.get("/ui/monitoring/fraud").text)
    bars = [s for s in specs if s["kind"] == "bars"]
    assert {s["title"] for s in bars} >= {"amount", "hour", "merchant", "country"}
    assert any(s["title"].startswith("prediction") for s in bars)
    for s in bars:
        assert [x["label"] for x in s["series"]][1] == "current"
        assert len(s["labels"]) == len(s["series"][0]["values"]) == len(s["series"][1]["values"])
        assert abs(sum(s["series"][1]["values"]) - 1) < 1e-6 or sum(s["series"][1]["values"]) < 1
    lines = [s for s in specs if s["kind"] == "lines"]
    assert lines, "no performance chart"
    line = lines[0]["series"][0]
    assert line["low"][-1] <= line["values"][-1] <= line["high"][-1]
    assert lines[0]["guide"]["label"] == "at registration"


def test_monitoring_page_without_a_run_says_how_to_get_one(ui):
    """Before any run the page says which command produces one (no empty charts)."""
    ui.login()
    html = ui.client.get("/ui/monitoring/fraud").text
    assert "slipway monitor fraud" in html and "data-chart" not in html


def test_batch_runs_are_listed_with_status_counts_and_rejects(ui):
    """A recorded batch run appears with its status, counts and rejects, and has a page."""
    ui.login()
    log = RunLog(ui.registry.store)
    mv = ui.registry.get("fraud:1")
    log.create("run-1", model_name="fraud", version=1, sha256=mv.sha256,
               source={"kind": "parquet", "paths": ["x.parquet"]}, fingerprint=None,
               output={"kind": "db"}, progress={"engine": "local"}, owner="h:1:t")  # fmt: skip
    log.finish("run-1", "failed", error="disk full")
    html = ui.client.get("/ui/batch").text
    assert "run-1" in html and "failed" in html and "fraud:1" in html
    detail = ui.client.get("/ui/batch/run-1").text
    assert "disk full" in detail
    assert ui.client.get("/ui/batch/run-2").status_code == 404


def test_keys_page_lists_keys_without_the_keys(ui):
    """Names, roles and prefixes are listed; the create form and revoke links are there."""
    ui.login()
    html = ui.client.get("/ui/keys").text
    assert "admin-key" in html and "predict-key" in html
    assert ui.keys["admin"][:12] in html  # the prefix, as `slipway keys list` shows it
    assert 'action="/ui/keys"' in html and "/ui/keys/predict-key/revoke" in html


def test_times_are_machine_readable_utc(ui):
    """Every time is a <time datetime=ISO> with UTC text (the page script shows local time)."""
    ui.login()
    html = ui.client.get("/ui/models/fraud").text
    stamps = re.findall(r'<time datetime="([^"]+)" title="([^"]+)">', html)
    assert stamps and all(iso.endswith("+00:00") and t.endswith(" UTC") for iso, t in stamps)


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/ui/models/nope", 404, "No model named &#39;nope&#39;"),
        ("/ui/models/fraud/versions/9", 404, "has no version 9"),
        ("/ui/models/fraud/versions/x", 422, "Invalid request"),
        ("/ui/models/fraud/versions/0", 422, "Invalid request"),
        ("/ui/monitoring/nope", 404, "No model named"),
        ("/ui/batch?model=nope", 404, "No model named"),
        ("/ui/traffic?window=1w", 422, "window &#39;1w&#39;"),
        ("/ui/models/fraud/promote?version=x", 422, "Invalid request"),
        ("/ui/models/fraud/promote?version=1&alias=Bad!", 400, "alias"),
        ("/ui/keys/nobody/revoke", 404, "No API key named"),
        ("/ui/nothing/here", 404, "no page /ui/nothing/here"),
    ],
)
def test_errors_are_pages_naming_the_problem(ui, path, status, text):
    """A bad path or value is a 4xx page saying what is wrong, never a 500."""
    ui.login()
    answer = ui.client.get(path)
    assert answer.status_code == status, answer.text
    assert text in answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_static_assets_are_served_by_name_with_etags(ui):
    """Assets need no session, revalidate by ETag, and only listed files exist."""
    answer = ui.client.get("/ui/static/vendor/uPlot.iife.min.js")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "text/javascript"
    )
    again = ui.client.get("/ui/static/vendor/uPlot.iife.min.js",
                          headers={"If-None-Match": answer.headers["etag"]})  # fmt: skip
    assert again.status_code == 304
    assert ui.client.get("/ui/static/vendor/uPlot.LICENSE").text.startswith("The MIT License")
    assert ui.client.get("/ui/static/nope.js").status_code == 404
    for bad in ("../__init__.py", "..%2F__init__.py", "vendor/../../web.py", "%2e%2e/web.py"):
        answer = ui.client.get(f"/ui/static/{bad}", follow_redirects=False)
        assert answer.status_code in (303, 404) and "import" not in answer.text


def test_console_routes_stay_out_of_the_openapi_document(ui):
    """The API's schema documents the API only (schemathesis fuzzes that)."""
    paths = ui.client.get("/openapi.json", headers={"Authorization": f"Bearer {ui.keys['admin']}"})
    assert not [p for p in paths.json()["paths"] if p.startswith("/ui")]
