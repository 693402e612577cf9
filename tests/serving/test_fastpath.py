"""The direct predict lane answers exactly as the FastAPI route: status, headers, body, metrics."""

from __future__ import annotations

import json

import pytest

from slipway.config import Settings
from slipway.serving.fastpath import predict_name
from tests.serving.test_ops import metric

LIMITS = {"serve_max_rows": 3, "serve_max_body_bytes": 4096, "serve_rate_limit": 0}


def cases(h):
    """(label, path, body bytes or chunks, headers) covering every answer of the route."""
    rows = h.rows("fraud", 2)
    names = list(h.registry.get("fraud").contract.names)
    auth = h.auth()
    bad = dict(rows[0], amount=True, hour="1.5")

    def body(value):
        return json.dumps(value).encode()

    return [
        ("records", "/v1/models/fraud/predict", body({"instances": rows}), auth),
        ("vector", "/v1/models/fraud/predict", body({"features": [rows[0][n] for n in names]}),
         auth),
        ("unit ids", "/v1/models/fraud/predict",
         body({"instances": rows, "unit_ids": ["a", None]}), auth),
        ("contract", "/v1/models/fraud/predict", body({"instances": [bad, rows[1]]}), auth),
        ("not json", "/v1/models/fraud/predict", b"{nope", auth),
        ("empty", "/v1/models/fraud/predict", b"", auth),
        ("nan", "/v1/models/fraud/predict", b'{"features": {"amount": NaN}}', auth),
        ("shape", "/v1/models/fraud/predict", body({"instances": [], "x": 1}), auth),
        ("unit id", "/v1/models/fraud/predict", body({"features": rows[0], "unit_id": 7}), auth),
        ("rows", "/v1/models/fraud/predict", body({"instances": rows * 2}), auth),
        ("model", "/v1/models/nope/predict", body({"features": rows[0]}), auth),
        ("no key", "/v1/models/fraud/predict", body({"features": rows[0]}), {}),
        ("bad key", "/v1/models/fraud/predict", body({"features": rows[0]}),
         {"X-API-Key": "slw_nope"}),
        ("declared", "/v1/models/fraud/predict", b"{" + b" " * 5000 + b"}", auth),
        ("streamed", "/v1/models/fraud/predict", [b'{"instances": [', *[b" " * 1000] * 6, b"]}"],
         auth),
        ("nested", "/v1/models/fraud/predict", b'{"features": ' + b"[" * 40 + b"]" * 40 + b"}",
         auth),
    ]  # fmt: skip


def answer(h, label, path, content, headers):
    """What a client sees: status, the headers that matter, the body without prediction ids."""
    headers = {**headers, "X-Request-ID": f"req-{label.replace(' ', '-')}"}
    content = iter(content) if isinstance(content, list) else content
    r = h.client.post(path, content=content, headers=headers)
    body = r.json()
    for item in body.get("predictions", []):
        item.pop("prediction_id")
    kept = ("content-type", "content-length", "x-request-id", "retry-after", "www-authenticate")
    return r.status_code, {k: r.headers.get(k) for k in kept}, body


def test_direct_lane_answers_exactly_as_the_fastapi_route(serve, tmp_path):
    """Every case gets the same status, headers and body (and metrics) with the lane on or off."""
    fast = serve(**LIMITS)
    slow = serve(settings=Settings(home=tmp_path / "slow", user="tester"), serve_fast_path=False,
                 **LIMITS)  # fmt: skip
    assert fast.client.app.lane is not None and slow.client.app.lane is None
    seen = set()
    for label, path, content, headers in cases(fast):
        slow_headers = {k: (slow.keys["predict"] if v == fast.keys["predict"] else v)
                        for k, v in headers.items()}  # fmt: skip
        if "Authorization" in headers:
            slow_headers["Authorization"] = f"Bearer {slow.keys['predict']}"
        got = answer(fast, label, path, content, headers)
        expected = answer(slow, label, path, content, slow_headers)
        assert got == expected, label
        seen.add(got[0])
    assert seen == {200, 400, 401, 404, 413, 422}
    fast_text, slow_text = fast.get("/metrics").text, slow.get("/metrics").text
    for status in ("200", "400", "401", "404", "413", "422"):
        route = "unmatched" if status == "401" else "/v1/models/{name}/predict"
        assert metric(fast_text, "slipway_http_requests_total", route=route, status=status) == (
            metric(slow_text, "slipway_http_requests_total", route=route, status=status)
        ), status
    for reason in ("unauthorized", "too_large"):
        assert metric(fast_text, "slipway_rejected_requests_total", reason=reason) == (
            metric(slow_text, "slipway_rejected_requests_total", reason=reason)
        ), reason


def test_only_post_to_a_predict_path_takes_the_lane(harness):
    """Other methods and paths are FastAPI's: a GET on the predict path is still a 405."""
    r = harness.client.get("/v1/models/fraud/predict", headers=harness.auth())
    assert r.status_code == 405 and r.headers["content-type"] == "application/json"
    r = harness.post("/v1/models/fraud/extra/predict", {"features": {}})
    assert r.status_code == 404 and "No route" in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/models/fraud/predict", "fraud"),
        ("/v1/models/a.b-c_1/predict", "a.b-c_1"),
        ("/v1/models//predict", None),
        ("/v1/models/a/b/predict", None),
        ("/v1/models/fraud/predict/", None),
        ("/v1/models/fraud", None),
        ("/v2/models/fraud/predict", None),
    ],
)
def test_predict_name_matches_the_route_template(path, name):
    """One non-empty segment between /v1/models/ and /predict, as FastAPI's {name} matches."""
    assert predict_name(path) == name
