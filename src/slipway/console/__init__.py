"""The web console: every model at a glance, and the decisions a click away, at ``/ui``.

``router(service)`` is the console's contribution to
:func:`slipway.serving.create_app` (``routers=[console.router]``): the pages, the actions and
the login, and, registered on the service for the gate, the session check that lets browsers
in under ``/ui`` with a cookie instead of an API key. The console calls the same library
functions as the CLI and never the database directly. See ``docs/console.md``.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, FastAPI

from slipway.config import Settings
from slipway.console import actions, login, pages
from slipway.console.sessions import PREFIX, Sessions
from slipway.serving.service import Service

__all__ = ["PREFIX", "app_from_env", "router"]


def router(service: Service) -> APIRouter:
    """The console's routes for one service (and its session check, for the gate)."""
    sessions = Sessions(
        service.registry.store, service.keys, service.settings.serve_console_session_hours
    )
    service.sessions[PREFIX] = sessions
    api = APIRouter(include_in_schema=False)
    api.include_router(login.router(service, sessions))
    api.include_router(pages.router(service))
    api.include_router(actions.router(service, sessions))
    api.include_router(pages.fallback(service))
    return api


def app_from_env() -> FastAPI:
    """The app ``slipway serve`` workers build: the service, plus the console unless
    ``SLIPWAY_SERVE_CONSOLE=false``.

    A stand-in for the composition root that builds every capability's routers (issue 14).
    """
    from slipway.serving import events
    from slipway.serving.accesslog import lean_log_records
    from slipway.serving.app import create_app

    lean_log_records()
    settings = Settings.from_env()
    return create_app(
        settings,
        routers=[events.router, *([router] if settings.serve_console else [])],
        multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
    )
