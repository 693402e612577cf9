"""Running the service under uvicorn: checks first, then one process or N workers.

Workers are separate processes started by uvicorn from an import string naming an app
factory (the composition root's, ``slipway.app:app_from_env``, passed in by ``slipway serve``),
so everything they need travels in ``SLIPWAY_*`` environment variables. With several workers,
prometheus-client's multiprocess mode gets a fresh directory for the run. SIGTERM (or Ctrl-C)
stops accepting connections, lets in-flight requests finish (up to ``graceful_timeout``
seconds), drains each worker's prediction log, then exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from slipway import portability
from slipway.config import Settings
from slipway.exceptions import ConfigError, ModelNotFound, UnloadableArtifact
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.app import NO_KEYS
from slipway.serving.connections import PROTOCOL
from slipway.versions import DEFAULT_ALIAS

logger = logging.getLogger("slipway.serving")


def log_config(level: str = "info", access_log: bool = True) -> dict[str, Any]:
    """Logging for uvicorn and Slipway: JSON access lines on stdout, the rest on stderr."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "plain": {"format": "%(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "slipway.serving.accesslog.BufferedLineHandler",
                "formatter": "plain",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "slipway": {"handlers": ["default"], "level": level, "propagate": False},
            "slipway.access": {
                "handlers": ["access"],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
        },
    }


def settings_for(
    base: Settings,
    *,
    models: Sequence[str] = (),
    auth: bool = True,
    workers: int = 1,
    console: bool | None = None,
    require_all: bool = False,
) -> Settings:
    """``base`` with the command line's choices applied (``console`` None keeps the setting)."""
    overrides: dict[str, Any] = {"serve_workers": workers}
    if console is not None:
        overrides["serve_console"] = console
    if models:
        overrides["serve_models"] = tuple(models)
    if not auth:
        overrides["serve_auth"] = False
    if require_all:
        overrides["serve_require_all"] = True
    return base.model_copy(update=overrides)


def preflight(settings: Settings) -> list[str]:
    """Refuse to start a server that could not serve; return the models it will serve."""
    registry = Registry(settings)
    try:
        if settings.serve_auth and not KeyStore(registry.store).active():
            raise ConfigError(NO_KEYS)
        served = [m.name for m in registry.models() if DEFAULT_ALIAS in m.aliases]
        for name in settings.serve_models:
            if name not in served:
                registry.resolve(name)  # names the known models when there is no such model
                raise ModelNotFound(
                    f"Model {name!r} has no {DEFAULT_ALIAS!r} alias, so it cannot be served; "
                    f"promote a version first: slipway models promote {name} VERSION."
                )
    finally:
        registry.store.dispose()
    return list(settings.serve_models) or served


def missing_code(settings: Settings) -> list[str]:
    """One line per served version that needs a module this environment cannot import.

    Such a version is not served (its load fails with the same message); checking at start
    says so before the first request does.
    """
    registry = Registry(settings)
    problems = []
    try:
        targets = registry.alias_versions(DEFAULT_ALIAS, settings.serve_models)
        for name, version in sorted(targets.items()):
            mv = registry.get(f"{name}:{version}")
            try:
                portability.check_importable(
                    mv.ref, mv.meta.get("modules", []), mv.meta.get("local_modules", {})
                )
            except UnloadableArtifact as exc:
                problems.append(str(exc))
    finally:
        registry.store.dispose()
    return problems


def environment(settings: Settings) -> dict[str, str]:
    """The ``SLIPWAY_*`` variables that carry ``settings``' serving choices to the workers."""
    env = {
        "SLIPWAY_SERVE_AUTH": "true" if settings.serve_auth else "false",
        "SLIPWAY_SERVE_WORKERS": str(settings.serve_workers),
        "SLIPWAY_SERVE_MODELS": ",".join(settings.serve_models),
        "SLIPWAY_SERVE_CONSOLE": "true" if settings.serve_console else "false",
        "SLIPWAY_SERVE_REQUIRE_ALL": "true" if settings.serve_require_all else "false",
    }
    return env


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_timeout: int = 30,
    log_level: str = "info",
    access_log: bool = True,
    app: str,
) -> None:
    """Serve until SIGTERM or Ctrl-C (blocks); ``app`` is the import string of the factory
    each worker calls to build its app (``module:function``; the composition root's)."""
    import uvicorn

    os.environ.update(environment(settings))
    workers = settings.serve_workers
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="slipway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            app,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config(log_level, access_log),
            access_log=False,  # Slipway writes its own, as JSON
            timeout_graceful_shutdown=graceful_timeout,
            timeout_worker_healthcheck=30,
            server_header=False,
            http=PROTOCOL,  # header and body deadlines, connections per peer
        )
    finally:
        if metrics_dir is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
