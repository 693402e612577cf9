"""What ``/ready`` (and ``/v2/health/ready``) answer: per model, the worker, the database.

The decisions, also in ``docs/serving.md``:

- A model is *expected* when it was named with ``--model`` or has a ``production`` alias, and
  *ready* when a verified version of it serves (an older version serving while a newer one
  failed to load is ready, with a warning).
- The worker is ready when its background threads run (prediction-log writer, key refresher,
  alias watcher: without them predictions go unlogged or revoked keys keep working) and at
  least one expected model is ready; with ``SLIPWAY_SERVE_REQUIRE_ALL`` (``--require-all``),
  only when every expected model is. Models that are not ready are listed either way.
- The database does not decide readiness. Keys and models live in memory and the prediction
  log buffers in memory while the database is away, so predictions keep being answered;
  failing readiness then would pull every replica (which share the one database) out of the
  load balancer at once and turn a logging outage into a serving outage. The answer says
  ``"database": "unreachable"`` with a warning naming the rows waiting to be written. Feedback
  and batch lookups, which need the database, answer 503 with ``Retry-After`` meanwhile.
- ``/ready`` needs no key, so it says which model is not ready and a short reason, never file
  paths or error text; the server log has the details.
- Nothing here touches the database: the database's state is what the background threads
  last saw, so a probe never waits on a connection timeout or a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.serving.runtime import ModelStatus
from slipway.serving.service import Service


@dataclass
class Readiness:
    """One worker's readiness: the verdict, each expected model, and what is wrong or odd."""

    ready: bool
    models: list[ModelStatus]
    database: str  # "ok" or "unreachable"
    problems: list[str] = field(default_factory=list)  # why it is not ready
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One line naming every reason it is not ready."""
        return "Not ready: " + "; ".join(self.problems)

    def to_dict(self) -> dict[str, Any]:
        """The ``/ready`` body (plus ``error`` and ``code`` when not ready)."""
        out: dict[str, Any] = {
            "status": "ready" if self.ready else "not_ready",
            "models": {m.name: m.version for m in self.models if m.ready},
            "readiness": {m.name: m.to_dict() for m in self.models},
            "database": self.database,
            "warnings": self.warnings,
        }
        if not self.ready:
            out = {"error": self.message(), "code": "not_ready", **out}
        return out


_THREADS = (
    ("log", "the prediction-log writer stopped"),
    ("keys", "the API key refresher stopped"),
    ("runtime", "the alias watcher stopped"),
)


def assess(service: Service) -> Readiness:
    """The readiness of the worker that runs ``service`` (cheap: reads memory only)."""
    runtime = service.runtime
    models = runtime.status()
    problems = [
        f"{what}; restart this worker"
        for part, what in _THREADS
        if (obj := getattr(service, part)) is not None and not obj.alive
    ]
    warnings: list[str] = []
    ready_models = [m for m in models if m.ready]
    not_ready = [f"{m.name}: {m.reason}" for m in models if not m.ready]
    if not models:
        problems.append(f"no model has a {runtime.alias!r} alias yet")
    elif (service.settings.serve_require_all and not_ready) or not ready_models:
        problems.extend(not_ready)
    else:
        warnings.extend(f"not ready: {line}" for line in not_ready)
    warnings.extend(f"{m.name}: {m.reason}" for m in ready_models if m.reason)
    database = "ok"
    if runtime.database_error or service.log.database_error:
        database = "unreachable"
        warnings.append(
            "the database is unreachable: predictions are still answered and the prediction "
            f"log holds {service.log.depth:,} rows for it (up to "
            f"{service.log.max_rows:,}, then new ones are dropped and counted)"
        )
    return Readiness(not problems, models, database, problems, warnings)
