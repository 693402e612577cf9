"""The Open Inference Protocol (KServe V2) with the binary tensor extension, as Triton speaks it.

A model's inputs are either one tensor per contract field (shape ``[N]`` or ``[N, 1]``, named
after the field), or, when every field is numeric, one ``[N, F]`` tensor with the fields in
contract order. Outputs are ``label`` (and ``probabilities`` ``[N, C]``) for classifiers or
``value`` for regressors, plus ``prediction_id``. Bodies are parsed from the raw bytes: clients
such as ``tritonclient`` send no Content-Type, and in binary mode the JSON header is followed by
raw tensor bytes (``Inference-Header-Content-Length`` says where the JSON ends).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from slipway._version import __version__
from slipway.exceptions import MalformedRequest, ModelNotFound
from slipway.problems import Problem
from slipway.serving import bodies, tensors
from slipway.serving.readiness import assess
from slipway.serving.routing import Route
from slipway.serving.runtime import Served
from slipway.serving.schemas import (
    ErrorOut,
    InferOut,
    LiveOut,
    ModelMetadataOut,
    ModelReadyOut,
    ServerMetadataOut,
    V2ReadyOut,
)
from slipway.serving.service import GUARDED, Responses, Service, json_response

HEADER = "inference-header-content-length"
REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
NOT_SERVED: Responses = {
    404: {"model": ErrorOut, "description": "The model (version) is not served here."}
}
INVALID: Responses = {
    400: {"model": ErrorOut, "description": "Unreadable JSON header or tensor bytes."},
    422: {"model": ErrorOut, "description": "Tensors that do not fit the model's inputs."},
}


def router(service: Service) -> APIRouter:
    """The ``/v2`` routes of one service."""
    api = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
    runtime = service.runtime

    @api.get(
        "", operation_id="v2_server_metadata", response_model=ServerMetadataOut, responses=GUARDED
    )
    async def server_metadata() -> Response:
        """Server name, version and protocol extensions."""
        return json_response(
            {
                "name": "slipway",
                "version": __version__,
                "extensions": ["binary_tensor_data"],
            }
        )

    @api.get("/health/live", operation_id="v2_live", response_model=LiveOut)
    async def live() -> Response:
        """Liveness (no key needed)."""
        return json_response({"live": True})

    @api.get(
        "/health/ready",
        operation_id="v2_ready",
        response_model=V2ReadyOut,
        responses={503: {"model": ErrorOut, "description": "Not ready."}},
    )
    async def ready() -> Response:
        """Readiness, the same verdict as ``/ready`` (no key needed)."""
        verdict = assess(service)
        if not verdict.ready:
            return json_response({"error": verdict.message()}, 503)
        return json_response({"ready": True})

    def served(name: str, version: str | None = None) -> Served:
        s = runtime.get(name)
        if version is not None and version != str(s.version):
            raise ModelNotFound(
                f"Model {name!r} version {version!r} is not served here; version {s.version} is."
            )
        return s

    found: Responses = {**GUARDED, **NOT_SERVED}
    binary = {"schema": {"type": "string", "format": "binary"}}
    usable: Responses = {
        **found,
        **INVALID,
        200: {
            "description": "The outputs: JSON, or with binary outputs requested, the JSON "
            "header (Inference-Header-Content-Length bytes) followed by the tensors' bytes.",
            "content": {"application/octet-stream": binary},
        },
    }
    readiness: Responses = {
        **found,
        503: {
            "model": ErrorOut,
            "description": "The model should serve but is not loaded (why, and Retry-After); "
            "or the server is at capacity.",
        },
    }

    @api.get(
        "/models/{name}",
        operation_id="v2_model_metadata",
        response_model=ModelMetadataOut,
        responses=found,
    )
    async def model_metadata(name: str) -> Response:
        """The model's input and output tensors."""
        return json_response(metadata(served(name)))

    @api.get(
        "/models/{name}/versions/{version}",
        operation_id="v2_version_metadata",
        response_model=ModelMetadataOut,
        responses=found,
    )
    async def version_metadata(name: str, version: str) -> Response:
        """The model version's input and output tensors."""
        return json_response(metadata(served(name, version)))

    @api.get(
        "/models/{name}/ready",
        operation_id="v2_model_ready",
        response_model=ModelReadyOut,
        responses=readiness,
    )
    async def model_ready(name: str) -> Response:
        """Whether the model is loaded and serving: 200 if so; 503 saying why not when it
        should serve (its version failed to load); 404 when it is not served here."""
        return json_response({"name": served(name).name, "ready": True})

    @api.get(
        "/models/{name}/versions/{version}/ready",
        operation_id="v2_version_ready",
        response_model=ModelReadyOut,
        responses=readiness,
    )
    async def version_ready(name: str, version: str) -> Response:
        """Whether the model version is loaded and serving."""
        return json_response({"name": served(name, version).name, "ready": True})

    @api.post(
        "/models/{name}/infer", operation_id="v2_infer", response_model=InferOut, responses=usable
    )
    async def infer(name: str, request: Request) -> Response:
        """Inference on JSON or binary tensors, by the version serving."""
        served(name)  # an unserved model is a 404 before the body is read
        return await _infer(service, name, None, await request.body(), request)

    @api.post(
        "/models/{name}/versions/{version}/infer",
        operation_id="v2_version_infer",
        response_model=InferOut,
        responses=usable,
    )
    async def version_infer(name: str, version: str, request: Request) -> Response:
        """Inference on JSON or binary tensors, by that version (404 unless it is serving)."""
        served(name, version)
        return await _infer(service, name, version, await request.body(), request)

    return api


def metadata(s: Served) -> dict[str, Any]:
    """Model metadata: one input per field, or one ``[-1, F]`` tensor for array models."""
    contract = s.model.contract
    if contract.input_kind == "array" and tensors.all_numeric(contract):
        inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, len(contract.fields)]}]
    else:
        inputs = [
            {"name": f.name, "datatype": tensors.field_datatype(f), "shape": [-1]}
            for f in contract.fields
        ]
    outputs = [{"name": "prediction_id", "datatype": "BYTES", "shape": [-1]}]
    if s.model.task == "regression":
        outputs.insert(0, {"name": "value", "datatype": "FP64", "shape": [-1]})
    else:
        classes = s.model.classes or []
        outputs.insert(
            0, {"name": "label", "datatype": tensors.label_datatype(classes), "shape": [-1]}
        )
        if tensors.has_proba(s.model):
            outputs.insert(
                1, {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(classes)]}
            )
    return {
        "name": s.name,
        "versions": [str(s.version)],
        "platform": "slipway_sklearn",
        "inputs": inputs,
        "outputs": outputs,
    }


def _route(
    service: Service, name: str, version: str | None, unit_id: str | None, row: Any = None
) -> Route:
    """The Route of a V2 request: :meth:`Runtime.route`'s choice; a request naming a version
    is answered by that version (the production one), outside any experiment."""
    route = service.runtime.route(name, unit_id, row)
    if version is None or str(route.served.version) == version:
        return route
    route = service.runtime.production_route(name)
    if str(route.served.version) != version:  # the alias moved since the request came in
        raise ModelNotFound(
            f"Model {name!r} version {version!r} is not served here; "
            f"version {route.served.version} is."
        )
    return route


async def _infer(
    service: Service, name: str, version: str | None, raw: bytes, request: Request
) -> Response:
    header_length = request.headers.get(HEADER)
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise MalformedRequest(f"{HEADER} {header_length[:40]!r} is not a number.") from None
        if not 0 < split <= len(raw):
            raise MalformedRequest(f"{HEADER} is {split}, but the body has {len(raw)} bytes.")
        head, blob = raw[:split], raw[split:]
    else:
        head, blob = raw, b""
    body = bodies.object_body(
        bodies.parse_json(head, service.settings.serve_max_json_depth),
        '{"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]}',
    )
    problems: list[Problem] = []
    bodies.unknown_fields(body, REQUEST_FIELDS, problems)
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problems.append(bodies.wrong("id", "a string", request_id))
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        problems.append(bodies.wrong("parameters", "an object", params))
        params = {}
    unit_id = bodies.unit_id_parameter(params, problems)
    bodies.refuse(problems)
    decoded = tensors.decode_inputs(body.get("inputs"), blob)
    # Tensors become rows in the production contract's order; an experiment that reads the unit
    # from an input field finds it in the first row.
    contract = service.runtime.get(name).model.contract
    rows, log_rows = tensors.to_rows(decoded, contract)
    route = _route(service, name, version, unit_id, log_rows[0] if len(log_rows) else None)
    s = route.served
    if s.model.contract is not contract:
        rows, log_rows = tensors.to_rows(decoded, s.model.contract)
    wanted = tensors.requested_outputs(body.get("outputs"), params, metadata(s)["outputs"])
    unit_ids = None if unit_id is None else [unit_id] * len(rows)
    # Long model calls, and every call to a version with features (enrichment reads the event
    # store), validate and predict in the inference threads, as the v1 routes do.
    answer = await service.answerer.answer_off_loop(
        route,
        rows,
        scope=request.scope,
        log_rows=log_rows,
        unit_ids=unit_ids,
        pool=service.pool,
        offload=service.batcher.offloaded(s, len(rows)),
    )
    outputs = tensors.output_tensors(answer, wanted)
    response: dict[str, Any] = {"model_name": s.name, "model_version": str(s.version)}
    if request_id is not None:
        response["id"] = request_id
    parameters: dict[str, Any] = {}
    if route.arm is not None:
        parameters.update(arm=route.arm, experiment=route.experiment)
    warnings = [w for out in answer.outputs for w in out.get("warnings", ())]
    if warnings:
        parameters["warnings"] = orjson.dumps(warnings).decode()
    if parameters:
        response["parameters"] = parameters
    json_outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary, tensor in outputs:
        meta: dict[str, Any] = {"name": name, "datatype": tensor.datatype, "shape": tensor.shape}
        if binary:
            data = tensor.to_bytes()
            meta["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            meta["data"] = tensor.data
        json_outputs.append(meta)
    response["outputs"] = json_outputs
    head_out = orjson.dumps(response)
    if not blobs:
        return Response(head_out, 200, None, "application/json")
    return Response(
        b"".join([head_out, *blobs]),
        200,
        {"Inference-Header-Content-Length": str(len(head_out))},
        "application/octet-stream",
    )
