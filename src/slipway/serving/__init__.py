"""The HTTP service: ``create_app(settings)`` builds it, ``slipway serve`` runs it.

See ``docs/serving.md`` for the routes, the limits and how to deploy it.
"""

from slipway.serving.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
