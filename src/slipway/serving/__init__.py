"""The HTTP service: ``create_app(settings)`` builds it, ``slipway serve`` runs it.

Other capabilities add routes through ``create_app(routers=...)``; the full service, with
every capability's routes, is built by the composition root, :func:`slipway.app.create_app`.
See ``docs/serving.md`` for the routes, the limits and how to deploy it. ``Route`` and
``RoutingPolicy`` are the routing seam: a policy passed as ``create_app(routing=...)`` picks the
version answering each request (``Production``, the default, picks the alias's).
"""

from slipway.serving.app import create_app
from slipway.serving.routing import Production, Route, RoutingPolicy

__all__ = ["Production", "Route", "RoutingPolicy", "create_app"]
