"""The web console: every model at a glance, and the decisions a click away, at ``/ui``.

``router(service)`` is the console's contribution to
:func:`slipway.serving.create_app` (``routers=[console.router]``; the composition root,
:mod:`slipway.app`, adds it unless ``SLIPWAY_SERVE_CONSOLE=false``): the pages, the actions,
the experiments (``console.experiments``) and the login, and, registered on the service for
the gate, the session check that lets browsers in under ``/ui`` with a cookie instead of an
API key. The console calls the same library
functions as the CLI and never the database directly. See ``docs/console.md``.

What other capabilities show on the console's pages is listed here, in the console's extension
points (:mod:`slipway.console.sections`): the capabilities it shows sit beside it, below it in
their layer (``console : experiments : lifecycle``), so the console reads them and they know
nothing of pages.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from slipway.console.sessions import PREFIX, Sessions
from slipway.serving.service import Service

__all__ = ["PREFIX", "router"]


def router(service: Service) -> APIRouter:
    """The console's routes for one service (and its session check, for the gate).

    The pages are built on the first request under ``/ui`` (:class:`Console`): a serving
    worker whose console nobody opens never imports them, nor monitoring, experiments, the
    lifecycle and the templates they show. The session check is registered now, as the gate
    reads it when the app is built.
    """
    sessions = Sessions(
        service.registry.store, service.keys, service.settings.serve_console_session_hours
    )
    service.sessions[PREFIX] = sessions
    console = Console(service, sessions)
    # An ASGI app as a route's endpoint gets every method; the console's own routes answer.
    return APIRouter(
        routes=[
            Route(PREFIX, console, include_in_schema=False),
            Route(PREFIX + "/{rest:path}", console, include_in_schema=False),
        ],
        include_in_schema=False,
    )


class Console:
    """The ASGI app behind every path under ``/ui``: the console's routes, built once."""

    def __init__(self, service: Service, sessions: Sessions) -> None:
        self.service, self.sessions = service, sessions
        self._routes: APIRouter | None = None
        self._lock = threading.Lock()

    def routes(self) -> APIRouter:
        """The console's pages, actions, experiments and login (imported and built once)."""
        with self._lock:
            if self._routes is None:
                self._routes = build_routes(self.service, self.sessions)
            return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.routes()(scope, receive, send)


def build_routes(service: Service, sessions: Sessions) -> APIRouter:
    """Every console route, with the other capabilities' sections registered on the pages."""
    from slipway.console import actions, checks, experiments, login, pages
    from slipway.console.sections import MODEL_COLUMNS, MODEL_SECTIONS, VERSION_SECTIONS

    # The lifecycle's gate results (`slipway check`): a column, a model section, a version
    # section (each once, however many services a process builds).
    if (checks.COLUMN_TITLE, checks.column) not in MODEL_COLUMNS:
        MODEL_COLUMNS.append((checks.COLUMN_TITLE, checks.column))
        MODEL_SECTIONS.append(checks.model_section)
        VERSION_SECTIONS.append(checks.version_section)
    api = APIRouter(include_in_schema=False)
    api.include_router(login.router(service, sessions))
    api.include_router(pages.router(service))
    api.include_router(actions.router(service, sessions))
    experiments.install()
    api.include_router(experiments.router(service))
    api.include_router(pages.fallback(service))
    return api
