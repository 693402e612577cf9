"""The one table from the error tree to HTTP status codes, and the JSON every error becomes.

Every error body is JSON naming the problem, never a stack trace. ``/v1`` and the other
routes answer ``{"error": message, "code": ..., "request_id": ...}`` (plus ``problems`` for
422s); the Open Inference Protocol routes under ``/v2`` answer ``{"error": message}`` as that
protocol requires. An unexpected exception is logged with its traceback under the request id
and answered with a 500 that names only the request id. The database being unreachable is not
a bug: it is answered 503 with ``Retry-After`` and logged as one line, without a traceback or
the driver's message (which names hosts and ports) in the body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from slipway.exceptions import (
    AccessDenied,
    ContractViolation,
    FeatureDefinitionError,
    Forbidden,
    InvalidReference,
    InvalidRequest,
    MalformedRequest,
    ModelNotReady,
    NotFound,
    Overloaded,
    RateLimited,
    RegistryConflict,
    ReloadFailed,
    RequestTooLarge,
    SlipwayError,
    Unauthorized,
    Unavailable,
)
from slipway.serving import scope as scopes
from slipway.store import TRANSIENT

logger = logging.getLogger("slipway.serving")

DATABASE_UNAVAILABLE = "database_unavailable"
DATABASE_RETRY_AFTER = 5

# Exception class -> (HTTP status, machine-readable code). The most specific class wins:
# an exception's MRO is walked and the first class found here decides.
STATUS: Mapping[type[BaseException], tuple[int, str]] = {
    MalformedRequest: (400, "malformed_request"),
    InvalidReference: (400, "invalid_reference"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    AccessDenied: (403, "forbidden"),
    NotFound: (404, "not_found"),
    ReloadFailed: (409, "reload_failed"),
    RegistryConflict: (409, "conflict"),
    RequestTooLarge: (413, "too_large"),
    ContractViolation: (422, "contract_violation"),
    FeatureDefinitionError: (422, "feature_error"),
    InvalidRequest: (422, "invalid_request"),
    RateLimited: (429, "rate_limited"),
    Overloaded: (503, "overloaded"),
    ModelNotReady: (503, "model_not_ready"),
    Unavailable: (503, "unavailable"),
    SlipwayError: (500, "internal_error"),
    # The database is down, restarting, unreachable or out of connections: retry later.
    **dict.fromkeys(TRANSIENT, (503, DATABASE_UNAVAILABLE)),
}
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def status_of(exc: BaseException) -> tuple[int, str]:
    """The status and code the table gives an exception (500 for anything unknown)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "internal_error"


def is_v2(scope: Scope) -> bool:
    """Whether the request is for the Open Inference Protocol, which has its own error shape."""
    path: str = scope.get("path", "")
    return path == "/v2" or path.startswith("/v2/")


def body(
    scope: Scope,
    message: str,
    code: str,
    problems: list[dict[str, Any]] | None = None,
) -> bytes:
    """The JSON error body for a request."""
    if is_v2(scope):
        return orjson.dumps({"error": message})
    out: dict[str, Any] = {"error": message, "code": code}
    request_id = scope.get(scopes.REQUEST_ID)
    if request_id:
        out["request_id"] = request_id
    if problems is not None:
        out["problems"] = problems
    return orjson.dumps(out)


def render(scope: Scope, exc: BaseException) -> Response:
    """The response an exception becomes."""
    status, code = status_of(exc)
    if code == DATABASE_UNAVAILABLE:
        return database_unavailable(scope, exc)
    if status >= 500 and not isinstance(exc, Unavailable):
        return internal_error(scope, exc)
    problems = None
    if status == 422 and isinstance(exc, ContractViolation | InvalidRequest):
        problems = [p.to_dict() for p in exc.problems]
    headers = _headers(exc)
    message = str(exc)
    return Response(body(scope, message, code, problems), status, headers, "application/json")


def internal_error(scope: Scope, exc: BaseException) -> Response:
    """A 500 that names the request id; the traceback goes to the server log only."""
    request_id = scope.get(scopes.REQUEST_ID, "-")
    logger.error("unhandled error in request %s", request_id, exc_info=exc)
    message = (
        f"Internal server error; the server log has the details under request id {request_id}."
    )
    return Response(body(scope, message, "internal_error"), 500, None, "application/json")


def database_unavailable(scope: Scope, exc: BaseException) -> Response:
    """A 503 with Retry-After; one warning line in the log (the driver's message stays there)."""
    request_id = scope.get("slipway.request_id", "-")
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    logger.warning(
        "database unavailable in request %s: %s: %s",
        request_id,
        type(exc).__name__,
        detail[0] if detail else "",
    )
    message = (
        f"The database is unavailable right now; retry in {DATABASE_RETRY_AFTER} s. "
        "Predictions are still answered meanwhile."
    )
    content = body(scope, message, DATABASE_UNAVAILABLE)
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
    return Response(content, 503, headers, "application/json")


async def send(scope: Scope, send_: Send, exc: BaseException) -> int:
    """Answer a raw ASGI request with the error response (for middleware); return the status."""
    response = render(scope, exc)
    await response(scope, _no_receive, send_)
    return response.status_code


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - error responses never read
    return {"type": "http.disconnect"}


def _headers(exc: BaseException) -> dict[str, str] | None:
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="slipway"'}
    return None


def install(app: FastAPI) -> None:
    """Make every error the app can raise answer JSON from the table above."""

    async def slipway_error(request: Request, exc: Exception) -> Response:
        return render(request.scope, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        elif exc.status_code == 404:
            message = f"No route {request.url.path}; the API is described at /docs."
        else:
            message = str(exc.detail)
        return Response(
            body(request.scope, message, code), exc.status_code, headers, "application/json"
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "row": None,
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "code": "invalid_parameter",
                "value": None,
                "expected": str(e.get("msg", "")),
                "message": f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}",
            }
            for e in exc.errors()
        ]
        message = "; ".join(str(p["message"]) for p in problems) or "Invalid request parameters."
        content = body(request.scope, message, "invalid_request", problems)
        return Response(content, 422, None, "application/json")

    async def unexpected(request: Request, exc: Exception) -> Response:
        return render(request.scope, exc)  # the table still decides (database errors: 503)

    app.add_exception_handler(SlipwayError, slipway_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
