"""The gate every HTTP request passes: request id, API key, limits, access log, request metrics.

A raw ASGI middleware (no per-request objects beyond what it needs), in this order: assign a
request id; authenticate (401); refuse a declared body above the limit before reading it (413);
spend a rate token of the key (429); read the whole body (413 as soon as it streams past the
limit); admit under the concurrency cap (503); call the app, which gets the body already read;
then write one JSON access-log line and count the request. Liveness and readiness pass without
a key or a limit.

The body is read *before* the concurrency slot is taken, so a client sending its body slowly
holds no slot: slots are for work, and slow bodies have their own bound (the body deadline of
``connections.py``, which closes the connection; the gate then records a 408). A body that
arrived with its headers, the usual case, is one ``receive`` that the app would have made
anyway.

Browser pages cannot send an API key with every request. A capability that serves them (the
web console under ``/ui``) hands the gate a :class:`SessionAuth` for its path prefix; requests
under that prefix are authenticated by it (a session cookie) instead of by a key, and pass
the same limits and records. The gate of the prediction lane has none, so predictions pay
nothing for it.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slipway.exceptions import SlipwayError
from slipway.keys import ApiKey
from slipway.serving import docs, errors
from slipway.serving import scope as scopes
from slipway.serving.accesslog import AccessLog
from slipway.serving.auth import ANONYMOUS, KeyCache
from slipway.serving.limits import (
    ConcurrencyCap,
    TokenBuckets,
    check_content_length,
    limited_receive,
    read_body_first,
)
from slipway.serving.metrics import Metrics

OPEN_PATHS = frozenset({"/health", "/ready", "/ping", "/v2/health/live", "/v2/health/ready"})
DOCS_PATHS = docs.PATHS
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


class SessionAuth(Protocol):
    """How requests under one path prefix authenticate: by a browser session, not a key."""

    async def __call__(self, scope: Scope) -> ApiKey | None:
        """The key behind the request's session, or None without a live session (the routes
        under the prefix then decide: a login page answers, every other one refuses)."""


class Gate:
    """ASGI middleware enforcing auth and limits, and recording every request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyCache | None,
        buckets: TokenBuckets,
        cap: ConcurrencyCap,
        max_body_bytes: int,
        metrics: Metrics,
        public_docs: bool = False,
        sessions: Mapping[str, SessionAuth] | None = None,
        replay_body: bool = True,
    ) -> None:
        self.app = app
        self.keys, self.buckets, self.cap = keys, buckets, cap
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.open_paths = OPEN_PATHS | DOCS_PATHS if public_docs else OPEN_PATHS
        # (prefix, prefix + "/", auth) per prefix; empty on the prediction lane.
        self.sessions = tuple((p, p + "/", a) for p, a in (sessions or {}).items())
        # False when the app reads the body from scope["slipway.body"] (the direct lane), so
        # no replaying ``receive`` is made for it.
        self.replay_body = replay_body
        self.access = AccessLog()
        self._ids = _RequestIds()
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = self._ids.get(headers)
        scope[scopes.REQUEST_ID] = request_id
        scope[scopes.STARTED] = started
        rid = request_id.encode()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        admitted = False
        try:
            path = scope["path"]
            if path not in self.open_paths:
                session = self._session_auth(path) if self.sessions else None
                key: ApiKey | None
                if session is not None:
                    key = await session(scope)
                elif self.keys is not None:
                    key = self.keys.authenticate(headers)
                else:
                    key = ANONYMOUS
                scope[scopes.KEY] = key
                declared = check_content_length(headers, self.max_body_bytes)
                client = (
                    f"key {key.name!r}"
                    if key is not None and self.keys is not None
                    else _client(scope)
                )
                self.buckets.take(client)
                if scope["method"] not in _BODILESS:
                    receive = await read_body_first(
                        scope, receive, declared, self.max_body_bytes, self.replay_body
                    )
                elif declared is None:
                    receive = limited_receive(receive, self.max_body_bytes)
                self.cap.enter()
                admitted = True
            await self.app(scope, receive, send_wrapper)
        except SlipwayError as exc:
            if response_started:
                raise
            self._reject(exc)
            status = await errors.send(scope, send_wrapper, exc)
        except ClientDisconnect:
            # The client left before sending its whole body, or its connection was closed for
            # sending it too slowly (connections.py answered 408 then): nobody to answer now.
            status = 408 if scope.get("slipway.timed_out") else 499
        except Exception as exc:
            if response_started:
                raise
            response = errors.render(scope, exc)  # a 500, or a 503 for a database outage
            await response(scope, receive, send_wrapper)
        finally:
            if admitted:
                self.cap.leave()
            self._record(scope, status, time.perf_counter() - started)

    def _session_auth(self, path: str) -> SessionAuth | None:
        for prefix, below, auth in self.sessions:
            if path == prefix or path.startswith(below):
                return auth
        return None

    def _reject(self, exc: SlipwayError) -> None:
        self.metrics.rejected.labels(errors.status_of(exc)[1]).inc()

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        # Only known methods become labels: a client must not be able to mint new series.
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        counter = self._counters.get((template, method, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(template, method, str(status))
            self._counters[(template, method, status)] = counter
        counter.inc()
        histogram = self._histograms.get((template, method))
        if histogram is None:
            histogram = self.metrics.http_latency.labels(template, method)
            self._histograms[(template, method)] = histogram
        histogram.observe(seconds)
        if self.access.enabled:
            key = scope.get(scopes.KEY)
            line: dict[str, Any] = {
                "ts": None,
                "request_id": scope[scopes.REQUEST_ID],
                "key": None if key is None else key.name,
                "method": method,
                "route": template if route is not None else None,
                "path": scope["path"],
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
                "pid": None,
            }
            served = scope.get(scopes.SERVED)
            if served is not None:
                line["model"], line["version"], line["rows"] = served
            self.access.write(line)


class _RequestIds:
    """Fresh request ids: 8 random hex digits per process, then a counter (16 in all)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count()

    def get(self, headers: list[tuple[bytes, bytes]]) -> str:
        """The client's ``X-Request-ID`` when it is a sane token, else a fresh id."""
        for name, value in headers:
            if name == b"x-request-id" and _REQUEST_ID.match(value):
                return value.decode()
        return f"{self._prefix}{next(self._count) & 0xFFFF_FFFF:08x}"


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"client {client[0]}" if client else "anonymous client"
