"""The Open Inference Protocol: metadata, JSON and binary tensors, protocol-shaped errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest


def field_tensors(rows, contract):
    """One JSON tensor per field."""
    kinds = {"number": "FP64", "integer": "INT64", "boolean": "BOOL"}
    return [
        {
            "name": f.name,
            "shape": [len(rows)],
            "datatype": kinds.get(f.kind, "BYTES"),
            "data": [r[f.name] for r in rows],
        }
        for f in contract.fields
    ]


def test_metadata_lists_inputs_and_outputs(serve):
    """Per-field inputs for frame models, one [-1, F] tensor for array models."""
    h = serve(models=("fraud", "grid"))
    fraud = h.get("/v2/models/fraud").json()
    assert fraud["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in fraud["inputs"]] == [
        ("amount", "FP64"),
        ("hour", "INT64"),
        ("merchant", "BYTES"),
        ("country", "BYTES"),
    ]
    assert [o["name"] for o in fraud["outputs"]] == ["label", "probabilities", "prediction_id"]
    grid = h.get("/v2/models/grid/versions/1").json()
    assert grid["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 20]}]
    assert h.get("/v2/models/grid/ready").json() == {"name": "grid", "ready": True}
    assert h.get("/v2").json()["extensions"] == ["binary_tensor_data"]


def test_json_tensors_per_field_match_the_v1_answer(harness):
    """Per-field JSON tensors give the labels and probabilities /v1 gives, and are logged."""
    rows = harness.rows("fraud", 4)
    contract = harness.registry.get("fraud").contract
    r = harness.post(
        "/v2/models/fraud/infer", {"id": "r1", "inputs": field_tensors(rows, contract)}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("fraud", "1", "r1")
    out = {o["name"]: o for o in body["outputs"]}
    v1 = harness.post("/v1/models/fraud/predict", {"instances": rows}).json()["predictions"]
    assert out["label"]["data"] == [p["label"] for p in v1]
    assert out["probabilities"]["shape"] == [4, 2]
    expected = [p["probabilities"][c] for p in v1 for c in ("0", "1")]
    np.testing.assert_allclose(out["probabilities"]["data"], expected, rtol=1e-12)
    ids = out["prediction_id"]["data"]
    assert harness.service.log.flush()
    body = {"feedback": [{"prediction_id": i, "label": 0} for i in ids]}
    assert harness.post("/v1/feedback", body).json()["accepted"] == 4


def test_integer_tensors_take_integral_json_numbers(serve):
    """72.0 in an INT64 tensor is the integer 72 (JSON has one number type); 72.5 is refused."""
    h = serve(models=("prices",))
    row = h.rows("prices", 1)[0]

    def infer(hour):
        tensors = [
            {"name": "amount", "datatype": "FP64", "shape": [1], "data": [row["amount"]]},
            {"name": "hour", "datatype": "INT64", "shape": [1], "data": [hour]},
        ]
        return h.post("/v2/models/prices/infer", {"inputs": tensors})

    as_int, as_float = infer(int(row["hour"])), infer(float(row["hour"]))
    assert as_int.status_code == as_float.status_code == 200, as_float.text
    value = next(o for o in as_float.json()["outputs"] if o["name"] == "value")["data"]
    assert value == next(o for o in as_int.json()["outputs"] if o["name"] == "value")["data"]
    assert infer(float(row["hour"]) + 0.5).status_code == 422


def test_binary_tensors_in_and_out(serve):
    """A binary [N, 20] FP32 input and binary outputs, framed by Inference-Header-Content-Length."""
    h = serve(models=("grid",))
    X = np.asarray(h.fitted["grid"].X_val[:3], dtype=np.float32)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [3, 20],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ],
            "outputs": [
                {"name": "probabilities", "parameters": {"binary_data": True}},
                {"name": "prediction_id", "parameters": {"binary_data": True}},
                {"name": "label", "parameters": {"binary_data": False}},
            ],
        }
    ).encode()
    r = h.client.post(
        "/v2/models/grid/infer",
        content=head + X.tobytes(),
        headers={**h.auth(), "Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    split = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:split])
    blob = r.content[split:]
    sizes = {o["name"]: o.get("parameters", {}).get("binary_data_size") for o in meta["outputs"]}
    proba = np.frombuffer(blob[: sizes["probabilities"]], dtype="<f8").reshape(3, 2)
    model = h.registry.load("grid@production", backend="auto")
    np.testing.assert_allclose(proba, model.predict_proba(X.astype(np.float64)), rtol=1e-12)
    ids, pos = [], sizes["probabilities"]
    while pos < len(blob):
        (n,) = struct.unpack_from("<I", blob, pos)
        ids.append(blob[pos + 4 : pos + 4 + n].decode())
        pos += 4 + n
    assert len(ids) == 3 and all(i[14] == "7" for i in ids)
    label = next(o for o in meta["outputs"] if o["name"] == "label")
    assert label["data"] == model.predict(X.astype(np.float64)).tolist()


def test_binary_bytes_tensors_for_categories(harness):
    """BYTES inputs in binary form: 4-byte little-endian lengths before each element."""
    rows = harness.rows("fraud", 2)
    frame = pd.DataFrame(rows)

    def pack(values):
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)

    blobs = [
        np.asarray(frame.amount, "<f8").tobytes(),
        np.asarray(frame.hour, "<i8").tobytes(),
        pack(frame.merchant),
        pack(frame.country),
    ]
    inputs = [
        {"name": n, "shape": [2], "datatype": d, "parameters": {"binary_data_size": len(b)}}
        for n, d, b in zip(
            ["amount", "hour", "merchant", "country"],
            ["FP64", "INT64", "BYTES", "BYTES"],
            blobs,
            strict=True,
        )
    ]
    head = json.dumps({"inputs": inputs}).encode()
    r = harness.client.post(
        "/v2/models/fraud/infer",
        content=head + b"".join(blobs),
        headers={**harness.auth(), "Inference-Header-Content-Length": str(len(head))},
    )
    assert r.status_code == 200, r.text
    labels = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
    assert labels == harness.registry.load("fraud").predict(frame).tolist()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 20], "datatype": "FP64", "data": [True] * 20}
                ]
            },
            422,
            "no coercion",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 20], "datatype": "FP64", "data": ["1.5"] * 20}
                ]
            },
            422,
            "no coercion",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [2, 20], "datatype": "FP64", "data": [0.0] * 20}
                ]
            },
            422,
            "40 elements",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
            422,
            "missing input",
        ),
        ({"inputs": []}, 422, "non-empty"),
        (
            {"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP99", "data": []}]},
            422,
            "FP64",
        ),
        ({"inputz": []}, 422, "inputz"),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 20], "datatype": "FP64", "data": [1e300] * 20}
                ]
            },
            422,
            "between",
        ),
    ],
)
def test_bad_inference_requests_answer_protocol_errors(serve, body, status, needle):
    """Errors on /v2 are exactly {"error": "..."}, naming the problem."""
    h = serve(models=("grid",))
    r = h.post("/v2/models/grid/infer", body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and needle in r.json()["error"]


def test_binary_header_longer_than_the_body_is_400(serve):
    """A header length past the end of the body is a 400 in the protocol's shape."""
    h = serve(models=("grid",))
    r = h.client.post(
        "/v2/models/grid/infer",
        content=b"{}",
        headers={**h.auth(), "Inference-Header-Content-Length": "99"},
    )
    assert r.status_code == 400 and set(r.json()) == {"error"}


def test_other_versions_are_not_served(harness):
    """/versions/{v} answers only for the version serving; others are 404 naming it."""
    r = harness.post("/v2/models/fraud/versions/7/infer", {"inputs": []})
    assert r.status_code == 404 and "version 1 is" in r.json()["error"]
    assert harness.get("/v2/models/fraud/versions/7/ready").status_code == 404
    assert harness.get("/v2/models/nope").json() == {
        "error": harness.get("/v2/models/nope").json()["error"]
    }
