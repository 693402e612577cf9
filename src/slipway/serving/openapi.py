"""The OpenAPI document, with request bodies and examples built from each served model's contract.

Routes read raw bodies (so nothing is coerced and tritonclient's Content-Type-less requests
work), so FastAPI cannot see their request bodies; this module describes them. The generic
``/v1/models/{name}/predict`` gets one example per served model, and each served model also
gets a concrete path (``/v1/models/fraud/predict``) whose body schema is exactly its contract,
so ``/docs`` offers a ready-to-send example per model; so do the Open Inference Protocol's
inference routes. The schemas say what the server accepts (``bodyschemas.py``), so generated
valid requests are answered 2xx: the per-model operations exactly; the generic ``{name}``
operations can only say "the body of the model named in the path", which JSON Schema cannot
tie to a path parameter. The document is rebuilt when the set of served versions changes.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from slipway.serving import bodyschemas, tensors, v2
from slipway.serving.gate import DOCS_PATHS, OPEN_PATHS
from slipway.serving.runtime import Served
from slipway.serving.service import Service

DESCRIPTION = """Predictions from the models in a Slipway registry.

Send an API key as `Authorization: Bearer KEY` or `X-API-Key: KEY` (create one with
`slipway keys create --name NAME --role predict`); only liveness and readiness are open.
Every error is JSON naming the problem; contract violations list every problem at once.
"""


def install(app: FastAPI, service: Service) -> None:
    """Replace ``app.openapi`` with a builder that follows the served versions."""
    cache: dict[tuple[tuple[str, int], ...], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        key = tuple(sorted((n, s.version) for n, s in service.runtime.served.items()))
        if key not in cache:
            cache.clear()
            cache[key] = build(app, service)
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI, service: Service) -> dict[str, Any]:
    """The whole document for the models serving now."""
    doc = get_openapi(
        title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes
    )
    doc.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    doc["security"] = [{"bearer": []}, {"apiKey": []}]
    open_paths = OPEN_PATHS
    if service.settings.serve_public_docs:
        open_paths |= DOCS_PATHS
    for path, item in doc["paths"].items():
        if path in open_paths:
            for op in item.values():
                op["security"] = []
    served = sorted(service.runtime.served.items())
    max_rows = service.settings.serve_max_rows
    paths = doc["paths"]
    per_model = "The body must fit the model named in the path; its own operation "
    _body(
        paths,
        "/v1/models/{name}/predict",
        "post",
        bodyschemas.predict_body(None, max_rows),
        {
            n: {"summary": f"{n}:{s.version}", "value": {"instances": [example_row(s)]}}
            for n, s in served
        },
        per_model + "(`predict_NAME`) has its exact schema.",
    )
    _body(
        paths,
        "/v1/feedback",
        "post",
        bodyschemas.feedback_body(max_rows),
        {
            "feedback": {"value": {"feedback": [{"prediction_id": "0190a3c4-...", "label": 1}]}},
            "batch_key": {
                "value": {"feedback": [{"model": "fraud", "batch_key": "txn-42", "label": 1}]}
            },
            "outcomes": {
                "value": {
                    "feedback": [
                        {"prediction_id": "0190a3c4-...", "outcome": "converted", "value": 1.0}
                    ]
                }
            },
        },
    )
    _body(
        paths,
        "/v1/events",
        "post",
        events_schema(max_rows),
        {"events": {"value": {"source": "transactions", "events": [
            {"event_id": "t_0001", "card_id": "c_123", "ts": "2026-11-02T10:15:00Z",
             "amount": 135.6}]}}},
    )  # fmt: skip
    _body(
        paths,
        "/invocations",
        "post",
        bodyschemas.invocations_body([s.model.contract for _, s in served], max_rows),
        {
            n: {"summary": f"{n}:{s.version}", "value": {"dataframe_records": [example_row(s)]}}
            for n, s in served
        },
        None if len(served) < 2 else "The body must fit the model named by `?model=`.",
    )
    infer_examples = {
        n: {"summary": f"{n}:{s.version}", "value": infer_example(s)} for n, s in served
    }
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        _body(
            paths,
            path,
            "post",
            bodyschemas.infer_body(None, None, max_rows),
            infer_examples,
            per_model + "(`v2_infer_NAME`) has its exact schema. Binary tensors "
            "(`Inference-Header-Content-Length`) are accepted as well.",
        )
    _served_names(paths, served)
    _per_model(paths, served, max_rows)
    return doc


def _per_model(paths: dict[str, Any], served: list[tuple[str, Served]], max_rows: int) -> None:
    """An operation of its own per served model where the body depends on the model."""
    predict = paths.get("/v1/models/{name}/predict", {}).get("post")
    infer = paths.get("/v2/models/{name}/infer", {}).get("post")
    version_infer = paths.get("/v2/models/{name}/versions/{version}/infer", {}).get("post")
    for name, s in served:
        contract = s.model.contract
        if predict is not None:
            op = _concrete(predict, s, "predict", f"Predict with {name} (version {s.version})")
            _set_body(
                op,
                bodyschemas.predict_body(contract, max_rows),
                {"instances": [example_row(s)]},
            )
            paths[f"/v1/models/{name}/predict"] = {"post": op}
        outputs = [o["name"] for o in v2.metadata(s)["outputs"]]
        schema = bodyschemas.infer_body(contract, outputs, max_rows)
        for generic, path, prefix in (
            (infer, f"/v2/models/{name}/infer", "v2_infer"),
            (version_infer, f"/v2/models/{name}/versions/{s.version}/infer", "v2_version_infer"),
        ):
            if generic is not None:
                op = _concrete(generic, s, prefix, f"Inference with {name} (version {s.version})")
                _set_body(op, schema, infer_example(s))
                paths[path] = {"post": op}


def _served_names(paths: dict[str, Any], served: list[tuple[str, Served]]) -> None:
    """Document the model-name parameters as the names served (and versions as theirs)."""
    if not served:
        return
    names = [n for n, _ in served]
    versions = sorted({str(s.version) for _, s in served})
    for item in paths.values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] in ("name", "model") and param["in"] in ("path", "query"):
                    param["schema"] = {"type": "string", "enum": names}
                    param["description"] = "A served model."
                elif param["name"] == "version" and param["in"] == "path":
                    param["schema"] = {"type": "string", "enum": versions}
                    param["description"] = "The version serving."


def _body(
    paths: dict[str, Any],
    path: str,
    method: str,
    schema: dict[str, Any],
    examples: dict[str, Any],
    note: str | None = None,
) -> None:
    op = paths.get(path, {}).get(method)
    if op is None:
        return
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    op["requestBody"] = {"required": True, "content": {"application/json": media}}
    if note:
        op["requestBody"]["description"] = note


def _concrete(generic: dict[str, Any], s: Served, prefix: str, summary: str) -> dict[str, Any]:
    op = copy.deepcopy(generic)
    op["operationId"] = f"{prefix}_{s.name}"
    op["summary"] = summary
    op["tags"] = [f"model {s.name}"]
    op["parameters"] = [
        p for p in op.get("parameters", []) if p.get("name") not in ("name", "version")
    ]
    return op


def events_schema(max_rows: int) -> dict[str, Any]:
    """``{"source": NAME, "events": [{id, entity key, time, other columns...}, ...]}``."""
    return {
        "type": "object",
        "properties": {
            "source": {"type": "string", "minLength": 1, "maxLength": 100},
            "events": {
                "type": "array",
                "items": {"type": "object"},
                "minItems": 1,
                "maxItems": max_rows,
            },
        },
        "required": ["source", "events"],
        "additionalProperties": False,
    }


def _set_body(op: dict[str, Any], schema: dict[str, Any], example: Any) -> None:
    op["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


def example_row(s: Served) -> dict[str, Any]:
    """The contract's example row, with a value for every field the contract leaves empty."""
    row = s.model.contract.example()
    for f in s.model.contract.fields:
        if row.get(f.name) is None and not f.nullable:
            row[f.name] = "2026-01-01T00:00:00Z" if f.kind == "datetime" else "text"
    return row


def infer_example(s: Served) -> dict[str, Any]:
    """A JSON-tensor inference request for one example row."""
    contract = s.model.contract
    row = example_row(s)
    if contract.input_kind == "array" and tensors.all_numeric(contract):
        data = [row[n] for n in contract.names]
        return {
            "inputs": [{"name": "input", "shape": [1, len(data)], "datatype": "FP64", "data": data}]
        }
    return {
        "inputs": [
            {
                "name": f.name,
                "shape": [1],
                "datatype": tensors.field_datatype(f),
                "data": [row[f.name]],
            }
            for f in contract.fields
        ]
    }
