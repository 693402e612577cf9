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

from fastapi import APIRouter

from slipway.console import actions, checks, experiments, login, pages
from slipway.console.sections import MODEL_COLUMNS, MODEL_SECTIONS, VERSION_SECTIONS
from slipway.console.sessions import PREFIX, Sessions
from slipway.serving.service import Service

__all__ = ["PREFIX", "router"]

# The lifecycle's gate results (`slipway check`): a column, a model section, a version section.
MODEL_COLUMNS.append((checks.COLUMN_TITLE, checks.column))
MODEL_SECTIONS.append(checks.model_section)
VERSION_SECTIONS.append(checks.version_section)


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
    experiments.install()
    api.include_router(experiments.router(service))
    api.include_router(pages.fallback(service))
    return api
