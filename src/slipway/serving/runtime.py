"""The set of model versions a worker serves, kept in step with the ``production`` aliases.

At startup every model with a ``production`` alias is loaded (or only the ``--model`` names),
each through :meth:`Registry.load`, which checks the artifact's sha256 before deserializing,
and then smoke-tested on a few rows of its reference sample. A background thread re-reads the
aliases every ``poll_seconds``; when one moved it loads and checks the new version in that
thread while the old one keeps serving, then swaps the served set in one assignment. A request
asks :meth:`Runtime.route` once, so it is answered by exactly one version: the one its routing
policy picks (see ``routing.py``; by default the alias's). A version that fails to load or to
predict never replaces the one serving; it is retried with backoff.

Readiness is per model (:meth:`Runtime.status`): a model is *expected* when it was named with
``--model`` or has a ``production`` alias, and *ready* when a verified version of it serves. A
model whose alias is removed (``slipway models unalias``) stops being expected and served.
Why a load failed is kept twice: in full for the server log, and as a short reason without
file paths (:func:`short_reason`) for unauthenticated readiness probes and error bodies.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from slipway.clock import utcnow
from slipway.exceptions import (
    ArtifactCorrupted,
    ArtifactMissing,
    IncompatibleEnvironment,
    ModelNotFound,
    ModelNotReady,
    ReloadFailed,
    UntrustedArtifact,
)
from slipway.predict import Model
from slipway.registry import Registry
from slipway.serving.metrics import Metrics
from slipway.serving.routing import Production, Route, RoutingFactory, RoutingPolicy
from slipway.versions import DEFAULT_ALIAS

logger = logging.getLogger("slipway.serving.runtime")
_RETRY_FIRST, _RETRY_MAX = 5.0, 300.0
_SMOKE_ROWS = 5


@dataclass
class Served:
    """One loaded, verified model version and what the hot path precomputes for it."""

    model: Model
    loaded_at: datetime
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.names = tuple(self.model.contract.names)

    @property
    def name(self) -> str:
        """The model's name."""
        return self.model.name

    @property
    def version(self) -> int:
        """The version number being served."""
        return self.model.version.version


@dataclass
class LoadFailure:
    """A version that could not be loaded, and when to try it again.

    ``error`` is the full message (for the server log); ``reason`` a short one without file
    paths, safe to show to anyone who can reach ``/ready``.
    """

    version: int
    error: str
    at: datetime
    retry_at: float
    attempts: int = 1
    reason: str = ""


@dataclass(frozen=True)
class ModelStatus:
    """Whether one expected model serves, which version, and why not (a short reason)."""

    name: str
    ready: bool
    version: int | None
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view (``/ready``)."""
        out: dict[str, object] = {"ready": self.ready, "version": self.version}
        if self.reason:
            out["reason"] = self.reason
        return out


def short_reason(exc: BaseException) -> str:
    """Why a load failed, in a few words and without file paths or other server details."""
    if isinstance(exc, ArtifactMissing):
        return "its artifact file is missing"
    if isinstance(exc, ArtifactCorrupted):
        return "its artifact failed the integrity check"
    if isinstance(exc, UntrustedArtifact):
        return f"its skops artifact holds untrusted types ({', '.join(exc.types)})"
    if isinstance(exc, IncompatibleEnvironment):
        return "it was saved under another scikit-learn version (SLIPWAY_ON_VERSION_MISMATCH)"
    if isinstance(exc, _SmokeTestFailed):
        return f"it failed to predict its reference rows ({type(exc.__cause__).__name__})"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"it needs module {exc.name!r}, which cannot be imported here"
    return f"loading it raised {type(exc).__name__}"


class _SmokeTestFailed(RuntimeError):
    """The loaded version could not predict a few rows of its own reference sample."""


@dataclass
class ReloadResult:
    """What a reload did: the version serving before and after."""

    model: str
    version: int
    previous: int | None
    changed: bool


@dataclass
class Runtime:
    """The served model set of one worker, and the thread that follows alias moves."""

    registry: Registry
    names: Sequence[str] = ()
    alias: str = DEFAULT_ALIAS
    poll_seconds: float = 1.0
    metrics: Metrics | None = None
    backend: Literal["auto", "sklearn"] = "auto"
    routing: RoutingFactory = Production
    failures: dict[str, LoadFailure] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._served: dict[str, Served] = {}
        # The production Route of each served model; swapped in one assignment, never mutated.
        self.routes: Mapping[str, Route] = {}
        self._expected: dict[str, int] = {}  # name -> version its alias points at (last read)
        self._lock = threading.Lock()  # one load at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.database_error: str | None = None  # why the last alias poll failed, if it did
        self.died: str | None = None  # why the watcher thread stopped, if it did
        self.policy: RoutingPolicy = self.routing(self)

    # -- what requests see -----------------------------------------------------------------

    def route(self, name: str, unit_id: str | None = None, row: Any = None) -> Route:
        """The version that answers a request for ``name`` from ``unit_id`` (whose first row is
        ``row``): the routing policy's choice. Every prediction route of every protocol asks
        here, and only here."""
        return self.policy.route(name, unit_id, row)

    def production_route(self, name: str) -> Route:
        """The Route to the version the alias points at (what :class:`Production` answers)."""
        route = self.routes.get(name)
        if route is None:
            raise self._missing(name)
        return route

    def get(self, name: str) -> Served:
        """The served version of ``name``.

        ModelNotReady (503) when the model should serve but its version failed to load, with
        the short reason; ModelNotFound (404) naming the served models otherwise.
        """
        served = self._served.get(name)
        if served is None:
            raise self._missing(name)
        return served

    def _missing(self, name: str) -> ModelNotReady | ModelNotFound:
        """Why ``name`` has no served version: it failed to load, or it is not served here."""
        failed = self.failures.get(name)
        if failed is None or name not in self._expected:
            return self._not_served(name)
        wait = max(1, int(failed.retry_at - time.monotonic()) + 1)
        return ModelNotReady(
            f"Model {name!r} is not ready: its {self.alias} version {failed.version} failed to "
            f"load ({failed.reason}); the server log has the details and the load is retried in "
            f"{wait} s. Fix it, or point {self.alias} elsewhere: slipway models promote {name} "
            f"VERSION (or slipway models unalias {name} {self.alias}).",
            retry_after=wait,
        )

    def in_scope(self, name: str) -> None:
        """Raise ModelNotFound unless ``name`` is a model this server serves or should serve.

        Model-scoped routes that read stored data (batch predictions, monitoring reports) call
        it first, so they answer only for the served models, and answer a name that is not
        served exactly as one that does not exist (names cannot be enumerated).
        """
        if name not in self._served and name not in self._expected:
            raise self._not_served(name)

    def _not_served(self, name: str) -> ModelNotFound:
        listed = ", ".join(sorted(self._served)) or "none"
        return ModelNotFound(
            f"Model {name!r} is not served here (serving: {listed}). A model is served "
            f"when it has a {self.alias!r} alias: slipway models promote {name} VERSION."
        )

    @property
    def served(self) -> Mapping[str, Served]:
        """Every served model by name (a snapshot)."""
        return self._served

    @property
    def alive(self) -> bool:
        """Whether the alias watcher runs (True before it is started)."""
        return self.died is None

    def status(self) -> list[ModelStatus]:
        """Each expected (or served) model: serving or not, which version, and why not."""
        out = []
        for name in sorted({*self._expected, *self._served}):
            served, failed = self._served.get(name), self.failures.get(name)
            if served is not None:
                reason = None
                if failed is not None:
                    reason = (
                        f"version {failed.version} failed to load ({failed.reason}); still "
                        f"serving version {served.version}"
                    )
                out.append(ModelStatus(name, True, served.version, reason))
            elif failed is not None:
                reason = f"{self.alias} version {failed.version} failed to load ({failed.reason})"
                out.append(ModelStatus(name, False, None, reason))
            else:
                out.append(ModelStatus(name, False, None, "not loaded yet"))
        return out

    # -- loading ---------------------------------------------------------------------------

    def load_all(self) -> None:
        """Load every model to serve; a ``--model`` name that cannot be served raises."""
        targets = self._targets()
        self._expected = targets
        for name in self.names:
            if name not in targets:
                raise ModelNotFound(
                    f"Model {name!r} has no {self.alias!r} alias, so it cannot be served; "
                    f"promote a version first: slipway models promote {name} VERSION."
                )
        for name, version in sorted(targets.items()):
            try:
                self._load(name, version)
            except ReloadFailed as exc:
                if name in self.names:
                    raise
                logger.error("%s", exc)

    def reload(self, name: str) -> ReloadResult:
        """Re-read ``name``'s alias now and load the version it points at if it changed."""
        if self.names and name not in self.names:
            raise ModelNotFound(f"Model {name!r} is not served here (started with --model).")
        target = self._targets([name]).get(name)
        if target is None:
            raise ModelNotFound(f"Model {name!r} has no {self.alias!r} alias to reload.")
        before = self._served.get(name)
        previous = None if before is None else before.version
        if previous == target:
            return ReloadResult(name, target, previous, False)
        self._load(name, target)
        return ReloadResult(name, target, previous, True)

    def check(self) -> None:
        """One pass of the watcher: load every alias that moved (failed ones after backoff).

        A model whose alias is gone stops being served (and its load failure is forgotten).
        """
        now = time.monotonic()
        targets = self._targets()
        self._expected = targets
        gone = [n for n in {*self._served, *self.failures} if n not in targets]
        if gone:
            with self._lock:
                self.routes = {n: r for n, r in self.routes.items() if n in targets}
                self._served = {n: s for n, s in self._served.items() if n in targets}
                for name in gone:
                    self.failures.pop(name, None)
            for name in sorted(gone):
                logger.warning("stopped serving %s: it has no %r alias any more", name, self.alias)
        for name, version in sorted(targets.items()):
            served = self._served.get(name)
            if served is not None and served.version == version:
                continue
            failed = self.failures.get(name)
            if failed is not None and failed.version == version and now < failed.retry_at:
                continue
            try:
                self._load(name, version)
            except ReloadFailed as exc:
                logger.error("%s", exc)

    def _targets(self, names: Sequence[str] | None = None) -> dict[str, int]:
        return self.registry.alias_versions(self.alias, names or self.names)

    def prepare(self, name: str, version: int) -> Served:
        """Load, verify and smoke-test ``name:version`` as a served version would be, without
        serving it (a routing policy's candidate). Raises ReloadFailed."""
        ref = f"{name}:{version}"
        try:
            model = self.registry.load(ref, backend=self.backend)
            self._smoke_test(model)
        except Exception as exc:
            raise ReloadFailed(f"Could not load {ref}: {exc}") from exc
        with self._lock:
            gc.freeze()
        return Served(model, utcnow())

    def _load(self, name: str, version: int) -> Served:
        with self._lock:
            current = self._served.get(name)
            if current is not None and current.version == version:
                return current
            ref = f"{name}:{version}"
            try:
                model = self.registry.load(ref, backend=self.backend, record_events=True)
                try:
                    self._smoke_test(model)
                except Exception as exc:
                    raise _SmokeTestFailed(
                        f"{ref} failed to predict its reference rows: {exc}"
                    ) from exc
                if model.enricher is not None and self.metrics is not None:
                    model.enricher.observer = self.metrics.features_observer  # type: ignore[attr-defined]
            except Exception as exc:
                self._failed(name, version, exc)
                keeps = "" if current is None else f"; still serving {name}:{current.version}"
                raise ReloadFailed(f"Could not load {ref}: {exc}{keeps}") from exc
            served = Served(model, utcnow())
            # One assignment each: the swap. A request reads one of them once.
            self.routes = {**self.routes, name: Route(served)}
            self._served = {**self._served, name: served}
            self.failures.pop(name, None)
            # A loaded model is tens of thousands of long-lived objects; moving them out of the
            # collector's generations keeps full collections from stalling requests (measured:
            # p99 at one client 60-100 ms -> 5-10 ms on the reference model).
            gc.freeze()
        if self.metrics is not None:
            self.metrics.model_loads.labels(name, str(version), "ok").inc()
            self.metrics.serving_version.labels(name).set(version)
        was = "" if current is None else f" (was {current.version})"
        logger.info("serving %s%s", ref, was)
        return served

    def _smoke_test(self, model: Model) -> None:
        """Predict a few reference rows, so a version that cannot predict never serves."""
        artifacts = model.version.meta.get("artifacts", {})
        if "sample" not in artifacts:
            return
        sample = self.registry.reference_sample(model.version).head(_SMOKE_ROWS)
        if model.enricher is not None:  # the sample holds computed features: test the pipeline
            model = Model(model.pipeline, model.version, model.engine)
        if len(sample):
            model.score(sample, on_error="split")

    def _failed(self, name: str, version: int, exc: Exception) -> None:
        before = self.failures.get(name)
        attempts = before.attempts + 1 if before and before.version == version else 1
        delay = min(_RETRY_FIRST * 2 ** (attempts - 1), _RETRY_MAX)
        self.failures[name] = LoadFailure(
            version, str(exc), utcnow(), time.monotonic() + delay, attempts, short_reason(exc)
        )
        if self.metrics is not None:
            self.metrics.model_loads.labels(name, str(version), "failed").inc()

    # -- the watcher thread ----------------------------------------------------------------

    def start(self) -> None:
        """Start following alias moves in a background thread."""
        if self._thread is None:
            self._stop.clear()
            self.died = None
            if self.metrics is not None:
                self.metrics.thread_alive.labels("alias_watcher").set(1)
            self._thread = threading.Thread(target=self._watch, name="slipway-models", daemon=True)
            self._thread.start()
        start = getattr(self.policy, "start", None)
        if callable(start):
            start()

    def stop(self) -> None:
        """Stop the watcher (a load in progress finishes first), and the policy's."""
        stop = getattr(self.policy, "stop", None)
        if callable(stop):
            stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _watch(self) -> None:
        try:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.check()
                except Exception as exc:  # the database may be briefly unreachable: keep serving
                    if self.database_error is None:
                        logger.warning("could not check model aliases: %s", exc)
                    self.database_error = type(exc).__name__
                else:
                    if self.database_error is not None:
                        logger.info("model aliases readable again")
                    self.database_error = None
        except BaseException as exc:
            self.died = f"{type(exc).__name__}: {exc}"
            logger.critical(
                "the alias watcher stopped (%s); this worker is not ready", self.died, exc_info=True
            )
            if self.metrics is not None:
                self.metrics.thread_alive.labels("alias_watcher").set(0)
            # Not re-raised: the traceback is in the log above, and readiness reports it.
