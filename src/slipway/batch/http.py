"""The batch capability's HTTP route: the latest precomputed prediction for a key.

:func:`router` is a router factory (``(service) -> APIRouter``) that the composition root
(:mod:`slipway.app`) passes to ``create_app(routers=...)``; serving itself knows nothing of batch.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from slipway.batch.runs import latest_prediction
from slipway.serving.service import Service, json_response, not_found, v1_router
from slipway.store import Store


class BatchPredictionOut(BaseModel):
    """The latest precomputed batch prediction for one key."""

    model: str
    key: str
    version: int
    run_id: str
    scored_at: str
    label: Any = None
    probabilities: dict[str, float] | None = None
    value: float | None = None


def router(service: Service) -> APIRouter:
    """``GET /v1/models/{name}/predictions/{key}``."""
    api = v1_router()
    answers = not_found("The model is not served here, or has no batch prediction for that key.")

    @api.get(
        "/models/{name}/predictions/{key}",
        operation_id="get_batch_prediction",
        response_model=BatchPredictionOut,
        responses=answers,
    )
    def get_batch_prediction(name: str, key: str) -> Response:
        """The latest precomputed prediction for ``key`` from `slipway batch` runs."""
        service.runtime.in_scope(name)  # served models only; others answer as unknown ones
        return json_response(latest_batch_prediction(service.registry.store, name, key))

    return api


def latest_batch_prediction(store: Store, name: str, key: str) -> dict[str, Any]:
    """The ``GET /v1/models/{name}/predictions/{key}`` answer (PredictionNotFound is a 404)."""
    stored = latest_prediction(store, name, key)
    out: dict[str, Any] = {
        "model": stored.model_name,
        "key": stored.key,
        "version": stored.version,
        "run_id": stored.run_id,
        "scored_at": stored.scored_at.isoformat(),
    }
    if stored.value is not None:
        out["value"] = stored.value
    else:
        out["label"] = stored.label
        if stored.probabilities is not None:
            out["probabilities"] = stored.probabilities
    return out
