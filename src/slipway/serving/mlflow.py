"""MLflow's scoring protocol: ``POST /invocations``, so MLflow clients can switch over.

Bodies are MLflow's: ``dataframe_split`` (``columns`` + ``data``), ``dataframe_records``,
``instances`` (records or positional rows) or ``inputs`` (the same, or ``{column: [values]}``),
with an optional empty ``params``. The answer is ``{"predictions": [...]}``: labels for
classifiers, values for regressors, as the sklearn flavour's ``predict`` gives them, plus the
``prediction_ids`` to send feedback with. With several models served, name one with
``?model=NAME``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from slipway.exceptions import InvalidRequest, ModelNotFound
from slipway.problems import Problem
from slipway.serving import bodies
from slipway.serving.schemas import ErrorOut, HealthOut, InvocationsOut
from slipway.serving.service import GUARDED, Service, json_response

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
EXAMPLE = '{"dataframe_split": {"columns": [...], "data": [[...]]}}'


def router(service: Service) -> APIRouter:
    """``/invocations`` and MLflow's liveness route ``/ping``."""
    api = APIRouter(tags=["MLflow scoring protocol"])

    @api.get("/ping", operation_id="mlflow_ping", response_model=HealthOut)
    async def ping() -> Response:
        """Liveness, as MLflow's scoring server answers it (no key needed)."""
        return json_response({"status": "ok"})

    @api.post(
        "/invocations",
        operation_id="invocations",
        response_model=InvocationsOut,
        responses={
            **GUARDED,
            404: {"model": ErrorOut, "description": "No such model served."},
            422: {"model": ErrorOut, "description": "Unusable body or contract violations."},
        },
    )
    async def invocations(request: Request, model: str | None = None) -> Response:
        """Score an MLflow body with the model named by ``?model=`` (or the only one served)."""
        # MLflow bodies name no unit: the request is routed for unit None (or by the first
        # row, for an experiment that reads the unit from an input field).
        name = _pick(service, model)
        service.runtime.get(name)  # an unserved model is a 404 before the body is read
        rows = parse(await service.body(request))
        route = service.runtime.route(name, None, rows[0])
        answer = await service.batcher.answer(route, rows, scope=request.scope)
        predictions = [out.get("value", out.get("label")) for out in answer.outputs]
        out: dict[str, Any] = {"predictions": predictions, "prediction_ids": answer.ids}
        if route.arm is not None:
            out.update(version=route.served.version, arm=route.arm, experiment=route.experiment)
        return json_response(out)

    return api


def _pick(service: Service, name: str | None) -> str:
    """The model a request is for: ``?model=``, else the only one served."""
    if name is not None:
        return name
    served = service.runtime.served
    if len(served) == 1:
        return next(iter(served))
    listed = ", ".join(sorted(served)) or "none"
    raise ModelNotFound(
        f"This server serves {len(served)} models ({listed}); name one with "
        "/invocations?model=NAME."
    )


def parse(value: Any) -> list[Any]:
    """The rows of an MLflow scoring body (records, or positional rows)."""
    body = bodies.object_body(value, EXAMPLE)
    problems: list[Problem] = []
    bodies.unknown_fields(body, (*FORMATS, "params"), problems)
    given = [f for f in FORMATS if f in body]
    if len(given) != 1:
        problems.append(Problem("wrong_shape", f"send exactly one of {', '.join(FORMATS)}"))
    params = body.get("params")
    if params not in (None, {}):
        problems.append(bodies.wrong("params", "no params: Slipway models take none", params))
    bodies.refuse(problems)
    fmt = given[0]
    data = body[fmt]
    if fmt == "dataframe_split":
        return _split(data)
    if fmt == "inputs" and isinstance(data, dict):
        return _columns(data)
    if not isinstance(data, list) or not data:
        bodies.refuse([bodies.wrong(fmt, "a non-empty list of rows", data)])
    if all(isinstance(r, dict) for r in data) or all(isinstance(r, list) for r in data):
        return list(data)
    raise InvalidRequest(
        f"{fmt}: rows must all be objects {{column: value}} or all be lists of values.",
        [bodies.wrong(fmt, "rows that are all objects or all lists", data)],
    )


def _split(data: Any) -> list[Any]:
    if not isinstance(data, dict):
        bodies.refuse(
            [bodies.wrong("dataframe_split", '{"columns": [...], "data": [[...]]}', data)]
        )
    problems: list[Problem] = []
    bodies.unknown_fields(data, ("columns", "data", "index"), problems)
    columns, rows = data.get("columns"), data.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        problems.append(bodies.wrong("columns", "a list of column names", columns))
    if not isinstance(rows, list) or not rows:
        problems.append(bodies.wrong("data", "a non-empty list of rows", rows))
    bodies.refuse(problems)
    assert isinstance(columns, list) and isinstance(rows, list)
    if len(set(columns)) != len(columns):
        bodies.refuse([Problem("wrong_shape", "each column name once", None, "columns")])
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            problems.append(bodies.wrong("data", f"a list of {len(columns)} values", row, i))
    bodies.refuse(problems)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _columns(data: dict[str, Any]) -> list[Any]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
    if not data or len(lengths) != 1 or -1 in lengths or 0 in lengths:
        bodies.refuse([bodies.wrong("inputs", "{column: [values]} with lists of one length", data)])
    names = list(data)
    return [dict(zip(names, values, strict=True)) for values in zip(*data.values(), strict=True)]
