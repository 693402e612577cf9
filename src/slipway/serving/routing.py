"""Which loaded version answers a request: one function for every protocol, one seam behind it.

Every prediction route (``/v1`` by the direct lane or through FastAPI, ``/v2`` and MLflow's
``/invocations``) asks ``Runtime.route(name, unit_id)`` for a :class:`Route` before it predicts,
and nothing else picks a version. The runtime hands the question to its :class:`RoutingPolicy`:
by default :class:`Production`, which answers with the version the ``production`` alias points
at (a precomputed Route: one call, one dict lookup). An A/B test or a shadow deployment is
another policy, built by the composition root and passed to ``create_app(routing=...)``: it
names the ``arm`` and ``experiment`` the request falls in, which the prediction log records,
and an optional ``shadow`` version to be asked as well.

``unit_id`` is what a policy assigns arms by (a user, a session, an account): V1's ``unit_id``
(or ``unit_ids`` when every row carries the same one), V2's ``parameters.unit_id``; None when the
request names no single unit. ``row`` is the request's first row as sent (a ``{field: value}``
mapping or a positional list), for a policy that reads the unit from an input field instead;
such a policy names the unit it used in ``Route.unit_id``, and the log records it.

A policy that follows outside state (experiments in the store) may also have ``start()`` and
``stop()``: the runtime calls them when it starts and stops following aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from slipway.serving.runtime import Runtime, Served


@dataclass(frozen=True, slots=True)
class Route:
    """The answer to "who answers this request": the served version, and why it was chosen.

    ``arm`` and ``experiment`` are None outside an experiment; ``shadow`` is a version that
    also receives the request without answering it (None when nothing shadows); ``unit_id`` is
    the unit the policy assigned by when it read it from the row (else None).
    """

    served: Served
    arm: str | None = None
    experiment: str | None = None
    shadow: Served | None = None
    unit_id: str | None = None


class RoutingPolicy(Protocol):
    """Chooses the version that answers each request for a model (the routing seam)."""

    def route(self, name: str, unit_id: str | None, row: Any = None) -> Route:
        """The Route for a request for ``name`` from ``unit_id`` (first row ``row``);
        ModelNotFound if none."""
        ...


# What create_app(routing=...) takes: builds the policy for one runtime (e.g. Production).
RoutingFactory = Callable[["Runtime"], RoutingPolicy]


class Production:
    """The default policy: every request is answered by the version the alias points at."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def route(self, name: str, unit_id: str | None, row: Any = None) -> Route:
        """The production Route of ``name``, whoever asks."""
        # The hot path: one dict lookup (production_route would add a call), errors aside.
        route = self.runtime.routes.get(name)
        return route if route is not None else self.runtime.production_route(name)
