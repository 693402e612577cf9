"""The OpenAPI document, with request bodies and examples built from each served model's contract.

Routes read raw bodies (so nothing is coerced and tritonclient's Content-Type-less requests
work), so FastAPI cannot see their request bodies; this module describes them. The generic
``/v1/models/{name}/predict`` gets one example per served model, and each served model also
gets a concrete path (``/v1/models/fraud/predict``) whose body schema is exactly its contract,
so ``/docs`` offers a ready-to-send example per model. The document is rebuilt when the set of
served versions changes.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from slipway.contract import Contract
from slipway.serving import tensors
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
    _body(
        paths,
        "/v1/models/{name}/predict",
        "post",
        predict_schema({"type": "object"}, None, max_rows),
        {
            n: {"summary": f"{n}:{s.version}", "value": {"instances": [example_row(s)]}}
            for n, s in served
        },
    )
    _body(
        paths,
        "/v1/feedback",
        "post",
        feedback_schema(max_rows),
        {"feedback": {"value": {"feedback": [{"prediction_id": "0190a3c4-...", "label": 1}]}}},
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
        invocations_schema(max_rows),
        {
            n: {"summary": f"{n}:{s.version}", "value": {"dataframe_records": [example_row(s)]}}
            for n, s in served
        },
    )
    infer_examples = {
        n: {"summary": f"{n}:{s.version}", "value": infer_example(s)} for n, s in served
    }
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        _body(paths, path, "post", infer_schema(), infer_examples, binary=True)
    _served_names(paths, served)
    generic = paths.get("/v1/models/{name}/predict", {}).get("post")
    if generic is not None:
        for name, s in served:
            paths[f"/v1/models/{name}/predict"] = {"post": _concrete(generic, s, max_rows)}
    return doc


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
    binary: bool = False,
) -> None:
    op = paths.get(path, {}).get(method)
    if op is None:
        return
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    content = {"application/json": media}
    if binary:
        content["application/octet-stream"] = {
            "schema": {"type": "string", "format": "binary"},
        }
    op["requestBody"] = {"required": True, "content": content}


def _concrete(generic: dict[str, Any], s: Served, max_rows: int) -> dict[str, Any]:
    op = copy.deepcopy(generic)
    op["operationId"] = f"predict_{s.name}"
    op["summary"] = f"Predict with {s.name} (version {s.version})"
    op["tags"] = [f"model {s.name}"]
    op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") != "name"]
    row = s.model.contract.json_schema()
    op["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": predict_schema(row, s.model.contract, max_rows),
                "example": {"instances": [example_row(s)]},
            }
        },
    }
    return op


def predict_schema(row: dict[str, Any], contract: Contract | None, max_rows: int) -> dict[str, Any]:
    """``{"instances": [row, ...]}`` or ``{"features": row | [values]}``, with unit ids."""
    unit_id = {"type": "string", "minLength": 1, "maxLength": 200}
    width = (
        {}
        if contract is None
        else {"minItems": len(contract.names), "maxItems": len(contract.names)}
    )
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "instances": {
                        "type": "array",
                        "items": row,
                        "minItems": 1,
                        "maxItems": max_rows,
                    },
                    "unit_id": unit_id,
                    "unit_ids": {
                        "type": "array",
                        "items": {"anyOf": [unit_id, {"type": "null"}]},
                        "description": "One unit id per instance (same length).",
                    },
                },
                "required": ["instances"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "features": {"oneOf": [row, {"type": "array", **width}]},
                    "unit_id": unit_id,
                },
                "required": ["features"],
                "additionalProperties": False,
            },
        ]
    }


def feedback_schema(max_rows: int) -> dict[str, Any]:
    """``{"feedback": [{"prediction_id", "label"}, ...]}``."""
    item = {
        "type": "object",
        "properties": {
            "prediction_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "label": {"type": ["string", "number", "boolean"]},
        },
        "required": ["prediction_id", "label"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "feedback": {"type": "array", "items": item, "minItems": 1, "maxItems": max_rows}
        },
        "required": ["feedback"],
        "additionalProperties": False,
    }


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


def invocations_schema(max_rows: int) -> dict[str, Any]:
    """MLflow's scoring bodies."""
    rows = {
        "type": "array",
        "minItems": 1,
        "maxItems": max_rows,
        "items": {"type": ["object", "array"]},
    }
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    one_of = []
    for name, schema in (
        ("dataframe_split", split),
        ("dataframe_records", rows),
        ("instances", rows),
        ("inputs", {"type": ["array", "object"]}),
    ):
        one_of.append(
            {
                "type": "object",
                "properties": {name: schema, "params": {"type": "object", "maxProperties": 0}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    return {"oneOf": one_of}


def infer_schema() -> dict[str, Any]:
    """An Open Inference Protocol inference request (JSON part)."""
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"enum": list(tensors.DATATYPES)},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
        "required": ["name", "shape", "datatype"],
        "additionalProperties": False,
    }
    output = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
        "required": ["name"],
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": output},
        },
        "required": ["inputs"],
        "additionalProperties": False,
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
