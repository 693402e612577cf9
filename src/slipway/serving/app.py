"""``create_app(settings) -> FastAPI``: the serving capability, everything passed in through here.

Other capabilities' routes (``routers``) and policies (``routing``) are passed in too, by the
composition root (:mod:`slipway.app`), which builds the full service ``slipway serve`` runs.

The app's lifespan is the service's life: on startup it reads the API keys (refusing to start
without any unless auth is off), loads and verifies every model to serve, and starts the key
refresher, the alias watcher and the prediction-log writer; on shutdown (uvicorn stops
accepting and lets in-flight requests finish first) it stops them and drains the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import PlainTextResponse, Response

from slipway._version import __version__
from slipway.config import Settings
from slipway.exceptions import ConfigError
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving import docs, errors, mlflow, openapi, v1, v2
from slipway.serving.accesslog import flush_access_log
from slipway.serving.answering import Answerer
from slipway.serving.auth import KeyCache
from slipway.serving.connections import STATE_KEY, ConnectionLimits
from slipway.serving.fastpath import FastPredict, ServiceApp
from slipway.serving.feedback import FeedbackDesk
from slipway.serving.gate import Gate
from slipway.serving.limits import ConcurrencyCap, TokenBuckets
from slipway.serving.log import PredictionLog
from slipway.serving.metrics import Metrics
from slipway.serving.readiness import assess
from slipway.serving.routing import Production, RoutingFactory
from slipway.serving.runtime import Runtime
from slipway.serving.schemas import HealthOut, NotReadyOut, ReadyOut
from slipway.serving.service import GUARDED, RouterFactory, Service, json_response
from slipway.serving.shadow import ShadowScorer

logger = logging.getLogger("slipway.serving")

NO_KEYS = (
    "No API keys exist, so no client could call this server. Create one with "
    "`slipway keys create --name NAME --role predict`, or start with --no-auth "
    "(SLIPWAY_SERVE_AUTH=false) on a trusted network only."
)


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    routers: Sequence[RouterFactory] = (),
    routing: RoutingFactory = Production,
    multiprocess_dir: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the service for ``settings``; ``routers`` add more ``(service) -> APIRouter``s.

    ``routing`` builds the policy that picks the version answering each request (see
    ``routing.py``; by default the production alias's). ``multiprocess_dir`` is
    prometheus-client's shared directory when several workers serve; ``clock`` is the
    monotonic clock the rate limiter refills by (tests pass a fake one).
    """
    registry = registry or Registry(settings)
    store = registry.store
    metrics = Metrics(multiprocess_dir)
    log = PredictionLog(
        store,
        max_rows=settings.serve_log_queue_rows,
        batch_rows=settings.serve_log_batch_rows,
        flush_seconds=settings.serve_log_flush_seconds,
        shadow_wait=settings.serve_shadow_wait_seconds,
        metrics=metrics,
    )
    shadow = ShadowScorer(
        metrics,
        max_rows=settings.serve_shadow_queue_rows,
        max_age=settings.serve_shadow_wait_seconds,
    )
    runtime = Runtime(
        registry,
        names=settings.serve_models,
        poll_seconds=settings.serve_poll_seconds,
        metrics=metrics,
        backend=settings.serve_backend,
        routing=routing,
    )
    cap = ConcurrencyCap(settings.serve_max_concurrency)
    keys = (
        KeyCache(KeyStore(store), settings.serve_poll_seconds, metrics)
        if settings.serve_auth
        else None
    )
    service = Service(
        settings=settings,
        registry=registry,
        runtime=runtime,
        log=log,
        metrics=metrics,
        keys=keys,
        answerer=Answerer(log, metrics, max_rows=settings.serve_max_rows, shadow=shadow),
        feedback=FeedbackDesk(
            store,
            log,
            settle_seconds=settings.serve_log_flush_seconds * 2 + 1,
            cap=cap,
            version=lambda name, number: registry.get(f"{name}:{number}"),
        ),
    )

    limits = ConnectionLimits(
        settings.serve_header_timeout_seconds,
        settings.serve_body_timeout_seconds,
        settings.serve_max_connections_per_peer,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        start(service)
        try:
            # The lifespan state reaches uvicorn's protocol (connections.py) as its app_state.
            yield {STATE_KEY: limits}
        finally:
            stop(service)

    app = ServiceApp(
        title="Slipway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # docs.install: the same pages, with assets from the package
        redoc_url=None,
    )
    app.state.service = service
    errors.install(app)
    docs.install(app)
    apis = [f(service) for f in (health_router, v1.router, v2.router, mlflow.router, *routers)]
    for api in apis:
        app.include_router(api)
    rate = settings.serve_rate_limit / settings.serve_workers
    burst = max(1, settings.serve_rate_burst // settings.serve_workers)
    # One set of keys, buckets and cap for both ways in, so limits count every request.
    guard: dict[str, Any] = {
        "keys": keys,
        "buckets": TokenBuckets(rate, burst, clock),
        "cap": cap,
        "max_body_bytes": settings.serve_max_body_bytes,
        "metrics": metrics,
        "public_docs": settings.serve_public_docs,
    }
    # Session-authenticated prefixes (the console) for the routed side only: the prediction
    # lane below never sees those paths, so its gate checks nothing extra.
    app.add_middleware(Gate, **guard, sessions=dict(service.sessions))
    if settings.serve_fast_path:
        routes = (r for a in apis for r in a.routes)
        route = next(r for r in routes if getattr(r, "operation_id", "") == "predict")
        app.lane = Gate(FastPredict(service, route), **guard, replay_body=False)
    openapi.install(app, service)
    return app


def start(service: Service) -> None:
    """Read keys, load models, start the background threads (raises if the server cannot serve)."""
    if service.keys is not None:
        service.keys.refresh()
        if not len(service.keys):
            raise ConfigError(NO_KEYS)
    else:
        logger.warning(
            "authentication is OFF (--no-auth): anyone who can reach this server can use "
            "every route, reloads included"
        )
    service.runtime.load_all()
    service.log.start()
    if service.answerer.shadow is not None:
        service.answerer.shadow.start()
    service.runtime.start()
    if service.keys is not None:
        service.keys.start()


def stop(service: Service) -> None:
    """Stop following keys and aliases, drain the prediction log."""
    if service.keys is not None:
        service.keys.stop()
    service.runtime.stop()
    if service.answerer.shadow is not None:
        service.answerer.shadow.stop()
    if service.pool is not None:
        service.pool.shutdown(wait=True, cancel_futures=True)
    service.log.close()
    service.metrics.close()
    flush_access_log()


def health_router(service: Service) -> APIRouter:
    """Liveness, readiness and metrics."""
    api = APIRouter(tags=["operations"])

    @api.get("/health", operation_id="health", response_model=HealthOut)
    async def health() -> Response:
        """Liveness: the process answers. Never touches the database (no key needed)."""
        return json_response({"status": "ok"})

    @api.get(
        "/ready",
        operation_id="ready",
        response_model=ReadyOut,
        responses={503: {"model": NotReadyOut, "description": "Not ready, with the reasons."}},
    )
    async def ready() -> Response:
        """Readiness, per model (no key needed): see docs/serving.md for what it means."""
        verdict = assess(service)
        return json_response(verdict.to_dict(), 200 if verdict.ready else 503)

    @api.get(
        "/metrics",
        operation_id="metrics",
        response_class=PlainTextResponse,
        responses={
            **GUARDED,
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format.",
            },
        },
    )
    def metrics() -> Response:
        """Prometheus metrics (every worker's, merged, with --workers N)."""
        service.metrics.log_queue_depth.set(service.log.depth)
        if service.answerer.shadow is not None:
            service.metrics.shadow_queue_depth.set(service.answerer.shadow.depth)
        content, media_type = service.metrics.render()
        return Response(content, 200, None, media_type)

    return api
