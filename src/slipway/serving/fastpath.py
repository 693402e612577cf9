"""The direct lane for ``POST /v1/models/{name}/predict``, the route that carries the load.

FastAPI's routing, dependency solving and middleware stack cost about 50 microseconds a
request, more than validating and predicting a row. :class:`ServiceApp` therefore hands a
``POST`` to a predict path straight to a :class:`~slipway.serving.gate.Gate` wrapped around
:class:`FastPredict`, before FastAPI sees it. The gate is the same one every other route passes
(auth, limits, access log, request metrics, sharing the same keys, buckets and cap), and the
answer is built by :func:`predict`, the function the FastAPI route itself calls, so status
codes, bodies, headers and error JSON are identical; the FastAPI route stays registered for the
OpenAPI document (and answers if the lane is off).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from slipway.exceptions import SlipwayError
from slipway.serving import bodies, errors
from slipway.serving.service import Service

_PREFIX, _SUFFIX = "/v1/models/", "/predict"
_HEADERS = (b"content-type", b"application/json")


def predict_name(path: str) -> str | None:
    """The model name of a ``/v1/models/{name}/predict`` path (one non-empty segment), else None."""
    if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
        name = path[len(_PREFIX) : -len(_SUFFIX)]
        if name and "/" not in name:
            return name
    return None


async def predict(
    service: Service, name: str, read: Callable[[], Awaitable[bytes]], scope: Scope
) -> bytes:
    """The JSON answer to a predict request: the model first (404), then the body, then the
    version its route picks (:meth:`Runtime.route`, by the body's unit id) answers."""
    runtime = service.runtime
    try:
        body = bodies.predict_request(
            bodies.parse_json(await read(), service.settings.serve_max_json_depth)
        )
    except SlipwayError:
        runtime.get(name)  # an unserved model is a 404 whatever the body
        raise
    route = runtime.route(name, body.unit_id, body.rows[0] if body.rows else None)
    answer = await service.batcher.answer(route, body.rows, scope=scope, unit_ids=body.unit_ids)
    served = route.served
    if route.arm is None:
        return orjson.dumps(
            {"model": served.name, "version": served.version, "predictions": answer.items()}
        )
    return orjson.dumps(
        {
            "model": served.name,
            "version": served.version,
            "arm": route.arm,
            "experiment": route.experiment,
            "predictions": answer.items(),
        }
    )


class FastPredict:
    """An ASGI app answering ``POST /v1/models/{name}/predict`` as the FastAPI route does."""

    def __init__(self, service: Service, route: BaseRoute) -> None:
        self.service = service
        self.route = route  # recorded in the scope, so metrics and the access log name it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = predict_name(scope["path"])
        assert name is not None
        scope["route"] = self.route
        scope["path_params"] = {"name": name}

        async def read() -> bytes:
            body: bytes | None = scope.get("slipway.body")  # the gate read it first
            return body if body is not None else await read_body(receive)

        try:
            content = await predict(self.service, name, read, scope)
        except SlipwayError as exc:  # as FastAPI's exception handler answers them
            response = errors.render(scope, exc)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(content)), _HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": content})


async def read_body(receive: Receive) -> bytes:
    """The whole request body (Starlette's ``Request.body()`` without the Request)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class ServiceApp(FastAPI):
    """FastAPI, with predictions taking the direct lane (``lane``) when it is set."""

    lane: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lane
        if (
            lane is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and not self.root_path
            and predict_name(scope["path"]) is not None
        ):
            scope["app"] = self
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
