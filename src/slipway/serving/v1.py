"""The ``/v1`` JSON API of serving: models, predictions, reloads, feedback.

Other capabilities add their own ``/v1`` routes through ``create_app(routers=...)``: batch
(``batch/http.py``: precomputed predictions) and monitoring (``monitoring/http.py``: reports).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from slipway.serving import bodies, fastpath
from slipway.serving.runtime import Served
from slipway.serving.schemas import (
    ErrorOut,
    FeedbackOut,
    ModelOut,
    ModelsOut,
    PredictOut,
    ReloadOut,
)
from slipway.serving.service import (
    ADMIN,
    GUARDED,
    JSON,
    Responses,
    Service,
    json_response,
    require_admin,
)

NOT_SERVED: Responses = {404: {"model": ErrorOut, "description": "The model is not served here."}}
INVALID: Responses = {
    400: {"model": ErrorOut, "description": "Not JSON, NaN/Infinity, or nested too deep."},
    422: {
        "model": ErrorOut,
        "description": "The body or its rows break the contract; "
        "`problems` lists every problem (row, field, value, expected).",
    },
}


def router(service: Service) -> APIRouter:
    """The ``/v1`` routes of one service."""
    api = APIRouter(prefix="/v1", tags=["v1"], responses=GUARDED)
    runtime, settings = service.runtime, service.settings

    @api.get("/models", operation_id="list_models", response_model=ModelsOut)
    async def list_models() -> Response:
        """Every model this server serves, with the version serving."""
        models = [
            {
                "name": s.name,
                "version": s.version,
                "task": s.model.task,
                "loaded_at": s.loaded_at.isoformat(),
            }
            for _, s in sorted(runtime.served.items())
        ]
        return json_response({"models": models})

    @api.get(
        "/models/{name}", operation_id="get_model", response_model=ModelOut, responses=NOT_SERVED
    )
    async def get_model(name: str) -> Response:
        """The served version of a model: metrics, and its input contract as JSON Schema."""
        return json_response(describe(runtime.get(name)))

    @api.post(
        "/models/{name}/predict",
        operation_id="predict",
        response_model=PredictOut,
        responses={**NOT_SERVED, **INVALID},
    )
    async def predict(name: str, request: Request) -> Response:
        """Predict one row (``features``) or many (``instances``); each gets a prediction_id."""
        # The same function answers the direct lane (fastpath.py), which takes these requests
        # before FastAPI routes them; this route documents them and answers when it is off.
        content = await fastpath.predict(service, name, request.body, request.scope)
        return Response(content, 200, None, JSON)

    @api.post(
        "/models/{name}/reload",
        operation_id="reload_model",
        response_model=ReloadOut,
        responses={
            **NOT_SERVED,
            **ADMIN,
            409: {
                "model": ErrorOut,
                "description": "The new "
                "version failed to load or verify; the old one keeps serving.",
            },
        },
        dependencies=[Depends(require_admin)],
    )
    def reload_model(name: str) -> Response:
        """Load the version the production alias points at now (admin). Other workers follow
        the alias on their own within a second or two."""
        result = runtime.reload(name)
        return json_response(result.__dict__)

    @api.post(
        "/feedback",
        operation_id="feedback",
        response_model=FeedbackOut,
        responses=INVALID,
    )
    async def post_feedback(request: Request) -> Response:
        """Record true labels or business outcomes (``{"prediction_id", "outcome",
        "value"}``) for earlier predictions, or labels of batch-scored rows by their key
        (``{"model", "batch_key", "run_id"?, "label"}``); idempotent per prediction_id (and
        outcome) or batch row."""
        value = bodies.parse_json(await request.body(), settings.serve_max_json_depth)
        items = bodies.feedback_request(value, settings.serve_max_rows)
        result = await service.feedback.record(items.labels, items.outcomes)
        return json_response(result.to_dict())

    return api


def describe(served: Served) -> dict[str, Any]:
    """The ``GET /v1/models/{name}`` answer."""
    mv = served.model.version
    return {
        "name": mv.name,
        "version": mv.version,
        "ref": mv.ref,
        "task": mv.task,
        "classes": mv.classes,
        "metrics": mv.metrics,
        "sha256": mv.sha256,
        "format": mv.format,
        "description": mv.description,
        "created_at": mv.created_at.isoformat(),
        "loaded_at": served.loaded_at.isoformat(),
        "backend": served.model.backend,
        "backend_check": mv.meta.get("onnx"),
        "input_schema": served.model.contract.json_schema(),
        "example": served.model.contract.example(),
    }
