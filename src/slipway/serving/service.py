"""What the routes share: the parts of one running service, and small response helpers.

:func:`slipway.serving.create_app` builds one :class:`Service` and hands it to each router
factory (``(service) -> APIRouter``); nothing is looked up from globals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from slipway.config import Settings
from slipway.exceptions import Forbidden
from slipway.registry import Registry
from slipway.serving import scope as scopes
from slipway.serving.answering import Answerer
from slipway.serving.auth import KeyCache
from slipway.serving.batching import MicroBatcher
from slipway.serving.bodies import parse_json
from slipway.serving.feedback import FeedbackDesk
from slipway.serving.gate import SessionAuth
from slipway.serving.log import PredictionLog
from slipway.serving.metrics import Metrics
from slipway.serving.runtime import Runtime
from slipway.serving.schemas import ErrorOut

JSON = "application/json"
Responses = dict[int | str, dict[str, Any]]

# Documented on every route guarded by a key, so /docs and schemathesis know every answer.
GUARDED: Responses = {
    401: {"model": ErrorOut, "description": "No API key, or an unknown or revoked one."},
    413: {"model": ErrorOut, "description": "The body exceeds the size limit."},
    429: {"model": ErrorOut, "description": "Rate limit exceeded; see Retry-After."},
    503: {
        "model": ErrorOut,
        "description": "At capacity, the model is not ready, or the database is unavailable; "
        "see Retry-After.",
    },
    "default": {"model": ErrorOut, "description": "Any other error, as JSON."},
}
ADMIN: Responses = {403: {"model": ErrorOut, "description": "The key's role is not admin."}}


def not_found(description: str) -> Responses:
    """The documented 404 of a route, saying when it happens."""
    return {404: {"model": ErrorOut, "description": description}}


def v1_router() -> APIRouter:
    """An empty router for ``/v1`` routes guarded by a key (serving's own or a capability's)."""
    return APIRouter(prefix="/v1", tags=["v1"], responses=GUARDED)


@dataclass
class Service:
    """One running service: settings, registry, served models, log, metrics, keys."""

    settings: Settings
    registry: Registry
    runtime: Runtime
    log: PredictionLog
    metrics: Metrics
    keys: KeyCache | None
    answerer: Answerer
    feedback: FeedbackDesk
    batcher: MicroBatcher = field(init=False)  # built from the settings, below
    pool: ThreadPoolExecutor | None = field(init=False)  # long model calls, off the loop
    # Path prefix -> how requests under it authenticate instead of by API key. A capability
    # serving browser pages (the console) registers its session check here from its router
    # factory; create_app hands the result to the gate.
    sessions: dict[str, SessionAuth] = field(default_factory=dict)

    def __post_init__(self) -> None:
        threads = self.settings.serve_inference_threads
        # Threads start on first use; stop() shuts them down.
        self.pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="slipway-inference") if threads else None
        )
        self.batcher = MicroBatcher(
            self.answerer,
            max_rows=self.settings.serve_batch_rows,
            max_wait=self.settings.serve_batch_wait_ms / 1000,
            pool=self.pool,
            offload_rows=self.settings.serve_offload_rows,
            feature_loop_ms=self.settings.serve_feature_loop_ms,
            feature_loop_rows=self.settings.serve_feature_loop_rows,
        )

    async def body(self, request: Request) -> Any:
        """The request body as JSON, within the size and depth limits."""
        raw = await request.body()
        return parse_json(raw, self.settings.serve_max_json_depth)


RouterFactory = Callable[[Service], APIRouter]


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialized with orjson."""
    return Response(orjson.dumps(content), status, headers, JSON)


def require_admin(request: Request) -> None:
    """Refuse (403) a request whose key is not an admin key."""
    key = request.scope.get(scopes.KEY)
    if key is None or key.role != "admin":
        name = "this key" if key is None else f"key {key.name!r}"
        raise Forbidden(
            f"This route needs an admin key; {name} has role "
            f"{'none' if key is None else key.role!r}. Create one with "
            "`slipway keys create --name NAME --role admin`."
        )
