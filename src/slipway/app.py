"""The composition root: the whole HTTP service, every capability plugged into serving.

Serving (:func:`slipway.serving.create_app`) knows only its own routes and seams; the other
capabilities plug in here, above all of them, and only here:

- routes: each capability that answers HTTP exposes a router factory
  (``(service) -> APIRouter``; batch's and monitoring's in their ``http.py``, the console's
  ``console.router``, and ``POST /v1/events`` of the features in ``serving/events.py``), listed
  by :func:`routers_for`;
- behaviour: policies behind serving's one-method Protocols, e.g. the routing policy that picks
  the version answering each request (``routing=``; :class:`~slipway.serving.Production` by
  default).

``slipway serve`` runs :func:`app_from_env` (the uvicorn ``--factory`` import string is
:data:`FACTORY`); tests and embedders call :func:`create_app`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from slipway import console, serving
from slipway.batch import http as batch_http
from slipway.config import Settings
from slipway.experiments import http as experiments_http
from slipway.experiments.policy import ExperimentRouting
from slipway.monitoring import http as monitoring_http
from slipway.serving import events
from slipway.serving.accesslog import lean_log_records
from slipway.serving.service import RouterFactory

# The capabilities' HTTP routes that every service has, in the order they are documented.
ROUTERS: tuple[RouterFactory, ...] = (
    batch_http.router,
    monitoring_http.router,
    experiments_http.router,
    events.router,
)


def routers_for(settings: Settings) -> list[RouterFactory]:
    """Every capability's router factory the settings ask for (the console unless
    ``SLIPWAY_SERVE_CONSOLE=false``)."""
    return [*ROUTERS, *([console.router] if settings.serve_console else [])]


# What uvicorn's workers import (``--factory``): every worker builds the same app.
FACTORY = "slipway.app:app_from_env"


def create_app(
    settings: Settings, *, routers: Sequence[RouterFactory] = (), **options: Any
) -> FastAPI:
    """The full service for ``settings``: serving plus every capability's routes.

    ``routers`` add more router factories after :func:`routers_for`'s; ``options`` are those of
    :func:`slipway.serving.create_app` (``registry``, ``routing`` for the routing policy: by
    default :class:`~slipway.experiments.policy.ExperimentRouting`, which answers with
    production outside experiments; ``multiprocess_dir``).
    """
    options.setdefault("routing", ExperimentRouting)
    return serving.create_app(settings, routers=(*routers_for(settings), *routers), **options)


def app_from_env() -> FastAPI:
    """The app uvicorn workers build (:data:`FACTORY`): settings from ``SLIPWAY_*`` variables."""
    lean_log_records()
    return create_app(
        Settings.from_env(), multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    )


def serve(settings: Settings, **options: Any) -> None:
    """Run the full service under uvicorn until SIGTERM or Ctrl-C (blocks).

    ``options`` are those of :func:`slipway.serving.server.run` (host, port, ...).
    """
    from slipway.serving import server

    server.run(settings, app=FACTORY, **options)
