"""The experiments capability's HTTP routes: list, start, read and stop experiments.

:func:`router` is a router factory (``(service) -> APIRouter``) that the composition root
(:mod:`slipway.app`) passes to ``create_app(routers=...)``. Reading takes any key; starting and
stopping take an admin key. Bodies are checked strictly (no coercion, no unknown fields) and a
bad one is a 422 naming the problem.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from slipway.exceptions import ConfigError, InvalidRequest
from slipway.experiments.desk import ExperimentDesk
from slipway.experiments.guardrails import Guardrails
from slipway.serving.schemas import ErrorOut
from slipway.serving.service import (
    ADMIN,
    GUARDED,
    Responses,
    Service,
    json_response,
    require_admin,
)
from slipway.versions import NAME_PATTERN

STATUS_ROWS = 5000  # logged rows a GET re-scores for an A/B test's agreement


class StartIn(BaseModel):
    """Start a shadow deployment or an A/B test of a candidate version against production."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(
        min_length=1, max_length=100, pattern=NAME_PATTERN.pattern, description="The model's name."
    )
    mode: Literal["shadow", "ab"]
    candidate: int = Field(ge=1, description="The version to try.")
    split: float | None = Field(
        None, gt=0, lt=1, description="A/B only: the share of units the candidate answers."
    )
    metric: Literal["accuracy", "error_rate", "mae", "conversion", "value"] | None = Field(
        None, description="What decides (default: accuracy, or mae for regressors)."
    )
    outcome: str | None = Field(
        None, min_length=1, max_length=100, description="The outcome name, for conversion/value."
    )
    unit_field: str | None = Field(
        None, min_length=1, max_length=200, description="The input field naming the unit."
    )
    min_effect: float | None = Field(None, gt=0, description="Smallest difference worth finding.")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    min_outcomes: int = Field(100, ge=1, le=1_000_000)
    guardrails: dict[str, float] | None = Field(None, description="Guardrail bounds by name.")


class StopIn(BaseModel):
    """Stop the running experiment: promote the candidate or abandon it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["promote", "abandon"]
    force: bool = Field(False, description="Promote even when the verdict is candidate worse.")


class ExperimentOut(BaseModel):
    """An experiment: what runs, how it is analysed, how it ended."""

    model_config = ConfigDict(extra="allow")

    id: str
    model: str
    mode: str
    status: str


class ExperimentsOut(BaseModel):
    """Experiments, newest first."""

    experiments: list[ExperimentOut]


class ReportOut(BaseModel):
    """An experiment's report, as `slipway experiment report --format json` prints it."""

    model_config = ConfigDict(extra="allow")

    experiment: ExperimentOut
    verdict: dict[str, object]


def router(service: Service) -> APIRouter:
    """``/v1/experiments`` routes of one service."""
    api = APIRouter(prefix="/v1", tags=["experiments"], responses=GUARDED)
    desk = ExperimentDesk(service.registry)
    missing: Responses = {404: {"model": ErrorOut, "description": "No such experiment or model."}}
    invalid: Responses = {422: {"model": ErrorOut, "description": "The body is not usable."}}
    conflict: Responses = {409: {"model": ErrorOut, "description": "The state forbids it."}}

    @api.get(
        "/experiments",
        operation_id="list_experiments",
        response_model=ExperimentsOut,
        responses={404: {"model": ErrorOut, "description": "No such model."}},
    )
    def list_experiments(
        model: str | None = Query(None, min_length=1, max_length=200),
    ) -> Response:
        """Every experiment (of one model), newest first."""
        return json_response({"experiments": [e.to_dict() for e in desk.experiments(model)]})

    @api.post(
        "/experiments",
        operation_id="start_experiment",
        status_code=201,
        response_model=ExperimentOut,
        responses={**ADMIN, **missing, **invalid, **conflict},
        dependencies=[Depends(require_admin)],
    )
    def start_experiment(body: StartIn) -> Response:
        """Start an experiment (admin). Serving workers route it within a poll interval."""
        try:
            experiment = desk.start(
                body.model,
                mode=body.mode,
                candidate=body.candidate,
                split=body.split,
                metric_name=body.metric,
                outcome=body.outcome,
                unit_field=body.unit_field,
                min_effect=body.min_effect,
                alpha=body.alpha,
                power=body.power,
                min_outcomes=body.min_outcomes,
                guardrails=Guardrails.parse(body.guardrails),
            )
        except ConfigError as exc:
            raise InvalidRequest(str(exc)) from None
        return json_response(experiment.to_dict(), 201)

    @api.get(
        "/experiments/{experiment_id}",
        operation_id="get_experiment",
        response_model=ReportOut,
        responses=missing,
    )
    async def get_experiment(experiment_id: str) -> Response:
        """An experiment's report, by id or model name: traffic per arm, the tests, agreement,
        guardrails and the verdict so far."""
        report = await run_in_threadpool(desk.report, experiment_id, rescore=STATUS_ROWS)
        return json_response(report.to_dict())

    @api.post(
        "/experiments/{experiment_id}/stop",
        operation_id="stop_experiment",
        response_model=ReportOut,
        responses={**ADMIN, **missing, **conflict},
        dependencies=[Depends(require_admin)],
    )
    def stop_experiment(experiment_id: str, body: StopIn) -> Response:
        """Stop a running experiment (admin): promote the candidate (refused on a *worse*
        verdict unless ``force``) or abandon it. Answers the final report."""
        _, report = desk.stop(experiment_id, promote=body.action == "promote", force=body.force)
        return json_response(report.to_dict())

    return api
