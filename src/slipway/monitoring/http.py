"""The monitoring capability's HTTP route: the latest stored report of a model.

:func:`router` is a router factory (``(service) -> APIRouter``) that the composition root
(:mod:`slipway.app`) passes to ``create_app(routers=...)``; serving itself knows nothing of
monitoring.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from slipway.exceptions import NotFound
from slipway.serving.service import Service, json_response, not_found, v1_router


class MonitoringOut(BaseModel):
    """The latest monitoring report of a model, as `slipway monitor --format json` prints it."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="OK, WARN or ALERT.")


def router(service: Service) -> APIRouter:
    """``GET /v1/models/{name}/monitoring``."""
    api = v1_router()

    @api.get(
        "/models/{name}/monitoring",
        operation_id="get_monitoring_report",
        response_model=MonitoringOut,
        responses=not_found("The model is not served here, or has no run yet."),
    )
    def get_monitoring_report(name: str) -> Response:
        """The latest stored `slipway monitor` report of a model (status, reasons, checks)."""
        # The runner (drift statistics, scipy, the estimators) loads on the first call, not
        # into every serving worker (see slipway/_lazy.py).
        from slipway.monitoring.runner import latest_report

        service.runtime.in_scope(name)  # served models only; others answer as unknown ones
        report = latest_report(service.registry, name)
        if report is None:
            raise NotFound(
                f"Model {name!r} has no monitoring report yet; run `slipway monitor {name}` "
                "(or schedule it) to produce one."
            )
        return json_response(report)

    return api
