"""JSON Schemas of request bodies, built from a model's contract, for the OpenAPI document.

A schema here says what the server accepts, as far as JSON Schema can say it: exact row
widths and field order for positional rows, every field required, numeric bounds (the
contract's hard limits), category enums where unseen values are refused, tensor names and
datatypes. Three constraints JSON Schema cannot state are said in descriptions instead:
``unit_ids`` has one entry per instance; every V2 input tensor has the same number of rows,
and its ``shape`` counts its ``data``; the columns of MLflow's ``{"inputs": {column: [...]}}``
have one length. Generic bodies (a route whose model is a path parameter) are described
loosely; each served model's own operation carries its exact body.
"""

from __future__ import annotations

from typing import Any

from slipway.contract import Contract
from slipway.serving import tensors
from slipway.serving.bodies import OUTCOME_VALUE_MAX

Schema = dict[str, Any]


def text(max_length: int) -> Schema:
    """A string of 1 to ``max_length`` characters without NUL (which PostgreSQL cannot store,
    so the body check refuses it)."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": "^[^\\x00]*$"}


UNIT_ID: Schema = text(200)


def field_schema(contract: Contract, name: str) -> Schema:
    """The schema of one field's value in a JSON row."""
    schema: Schema = contract.json_schema()["properties"][name]
    return schema


def positional_row(contract: Contract) -> Schema:
    """A row as a list of values in contract order."""
    n = len(contract.names)
    return {
        "type": "array",
        "prefixItems": [field_schema(contract, name) for name in contract.names],
        "items": False,
        "minItems": n,
        "maxItems": n,
        "description": f"The values of {', '.join(contract.names)}, in this order.",
    }


def predict_body(contract: Contract | None, max_rows: int) -> Schema:
    """``{"instances": [row, ...]}`` or ``{"features": row | [values]}``, with unit ids.

    Without a contract (the generic route), rows are any objects or lists.
    """
    if contract is None:
        row: Schema = {"type": "object"}
        positional: Schema = {"type": "array"}
    else:
        row, positional = contract.json_schema(), positional_row(contract)
    unit_id = {"anyOf": [UNIT_ID, {"type": "null"}]}
    unit_ids = {
        "type": "array",
        "items": {"anyOf": [UNIT_ID, {"type": "null"}]},
        "minItems": 1,
        "maxItems": max_rows,
        "description": "One unit id (or null) per instance, in order: as many as instances.",
    }
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
                    "unit_ids": unit_ids,
                },
                "required": ["instances"],
                "not": {"required": ["unit_id", "unit_ids"]},
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "features": {"oneOf": [row, positional]},
                    "unit_id": unit_id,
                    "unit_ids": {**unit_ids, "maxItems": 1, "description": "One unit id."},
                },
                "required": ["features"],
                "not": {"required": ["unit_id", "unit_ids"]},
                "additionalProperties": False,
            },
        ]
    }


def feedback_body(max_rows: int) -> Schema:
    """``{"feedback": [item, ...]}``: labels ``{"prediction_id", "label"}``,
    ``{"model", "unit_id", "label"}`` (the unit's latest prediction) or ``{"model",
    "batch_key", "run_id"?, "label"}`` (a batch-scored row), or business outcomes
    ``{"prediction_id", "outcome", "value"}``."""
    pid = text(64)
    label = {
        "type": "object",
        "properties": {"prediction_id": pid, "label": {"type": ["string", "number", "boolean"]}},
        "required": ["prediction_id", "label"],
        "additionalProperties": False,
    }
    by_unit = {
        "type": "object",
        "properties": {
            "model": text(200),
            "unit_id": UNIT_ID,
            "label": {"type": ["string", "number", "boolean"]},
        },
        "required": ["model", "unit_id", "label"],
        "additionalProperties": False,
    }
    by_key = {
        "type": "object",
        "description": "A batch-scored row by its key: the row of run_id, or of the latest run "
        "of the model that scored the key.",
        "properties": {
            "model": text(200),
            "batch_key": text(200),
            "run_id": {**text(64), "type": ["string", "null"]},
            "label": {"type": ["string", "number", "boolean"]},
        },
        "required": ["model", "batch_key", "label"],
        "additionalProperties": False,
    }
    outcome = {
        "type": "object",
        "properties": {
            "prediction_id": pid,
            "outcome": text(100),
            "value": {
                "type": "number",
                "minimum": -OUTCOME_VALUE_MAX,
                "maximum": OUTCOME_VALUE_MAX,
                "description": "Defaults to 1 (a conversion).",
            },
        },
        "required": ["prediction_id", "outcome"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "feedback": {
                "type": "array",
                "items": {"oneOf": [label, by_unit, by_key, outcome]},
                "minItems": 1,
                "maxItems": max_rows,
            }
        },
        "required": ["feedback"],
        "additionalProperties": False,
    }


def invocations_body(contracts: list[Contract], max_rows: int) -> Schema:
    """MLflow's scoring bodies: for the one model served, or one of several (``?model=``)."""
    if not contracts:
        return _invocations(None, max_rows)
    forms = [_invocations(c, max_rows) for c in contracts]
    return forms[0] if len(forms) == 1 else {"anyOf": forms}


def _invocations(contract: Contract | None, max_rows: int) -> Schema:
    def rows(item: Schema) -> Schema:
        return {"type": "array", "items": item, "minItems": 1, "maxItems": max_rows}

    if contract is None:
        records: Schema = {"anyOf": [rows({"type": "object"}), rows({"type": "array"})]}
        split_columns: Schema = {"type": "array", "items": {"type": "string"}}
        split_rows: Schema = rows({"type": "array"})
        columns: Schema = {"type": "object", "minProperties": 1}
    else:
        positional = positional_row(contract)
        records = {"anyOf": [rows(contract.json_schema()), rows(positional)]}
        n = len(contract.names)
        split_columns = {
            "type": "array",
            "prefixItems": [{"const": name} for name in contract.names],
            "items": False,
            "minItems": n,
            "maxItems": n,
        }
        split_rows = rows(positional)
        columns = {
            "type": "object",
            "properties": {n: rows(field_schema(contract, n)) for n in contract.names},
            "required": contract.names,
            "additionalProperties": False,
            "description": "{column: [values]}, every list of one length.",
        }
    split = {
        "type": "object",
        "properties": {"columns": split_columns, "data": split_rows, "index": {"type": "array"}},
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    forms = (
        ("dataframe_split", split),
        ("dataframe_records", records),
        ("instances", records),
        ("inputs", {"anyOf": [records, columns]}),
    )
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {name: schema, "params": {"type": "object", "maxProperties": 0}},
                "required": [name],
                "additionalProperties": False,
            }
            for name, schema in forms
        ]
    }


def infer_body(contract: Contract | None, outputs: list[str] | None, max_rows: int) -> Schema:
    """An Open Inference Protocol request (its JSON): generic, or for one model's contract."""
    if contract is None:
        tensor: Schema = {
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
        inputs: Schema = {"type": "array", "items": tensor, "minItems": 1}
    else:
        inputs = _model_inputs(contract, max_rows)
    output: Schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"} if outputs is None else {"enum": outputs},
            "parameters": {
                "type": "object",
                "properties": {"binary_data": {"type": "boolean"}},
            },
        },
        "required": ["name"],
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": inputs,
            "outputs": {"type": "array", "items": output},
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }


def _model_inputs(contract: Contract, max_rows: int) -> Schema:
    rows: Schema = {"type": "integer", "minimum": 1, "maximum": max_rows}
    no_binary: Schema = {"type": "object", "properties": {"binary_data_size": False}}

    def tensor(name: str, datatype: str, shape: Schema, data: Schema) -> Schema:
        return {
            "type": "object",
            "properties": {
                "name": {"const": name},
                "datatype": {"const": datatype},
                "shape": shape,
                "data": {**data, "minItems": 1, "maxItems": max_rows},
                "parameters": no_binary,
            },
            "required": ["name", "datatype", "shape", "data"],
            "additionalProperties": False,
        }

    column_shape = {
        "type": "array",
        "prefixItems": [rows, {"const": 1}],
        "items": False,
        "minItems": 1,
        "maxItems": 2,
    }
    per_field = {
        "type": "array",
        "prefixItems": [
            tensor(
                f.name,
                tensors.field_datatype(f),
                column_shape,
                {"type": "array", "items": _element(contract, f.name)},
            )
            for f in contract.fields
        ],
        "items": False,
        "minItems": len(contract.fields),
        "maxItems": len(contract.fields),
        "description": "One tensor per field, [N] or [N, 1] for N rows: the same N for every "
        "tensor, and N values in each tensor's data.",
    }
    if not (contract.input_kind == "array" and tensors.all_numeric(contract)):
        return per_field
    width = len(contract.fields)
    row = positional_row(contract)
    matrix_shape = {
        "type": "array",
        "prefixItems": [rows, {"const": width}],
        "items": False,
        "minItems": 2,
        "maxItems": 2,
    }
    matrix = tensor("input", "FP64", matrix_shape, {"type": "array", "items": row})
    return {
        "anyOf": [
            per_field,
            {
                "type": "array",
                "prefixItems": [matrix],
                "items": False,
                "minItems": 1,
                "maxItems": 1,
                "description": f"One [N, {width}] tensor, its data N rows of {width} values "
                "(nested, or flat).",
            },
        ]
    }


def _element(contract: Contract, name: str) -> Schema:
    """One element of a field's tensor: its row value, without null (JSON tensors have none)."""
    schema = field_schema(contract, name)
    if "anyOf" in schema:
        return next(s for s in schema["anyOf"] if s != {"type": "null"})
    return schema
