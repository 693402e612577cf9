"""The routing policy of a server running experiments: serving's seam, filled in.

Serving asks ``route(name, unit_id, row)`` for every request. Outside an experiment the answer
is production's (:class:`~slipway.serving.routing.Production`). For a model with a running
experiment:

- shadow: production answers (arm ``control``) and the candidate is named as ``shadow``;
- A/B: the unit (``unit_id``, or the experiment's ``--unit-field`` read from the first row) is
  hashed with the experiment's salt into an arm (:func:`~slipway.experiments.assignment.assign`,
  through an :class:`~slipway.experiments.assignment.Assigner` set up once per experiment); a
  request without a unit is assigned at random.

A background thread (started and stopped with the runtime) re-reads the running experiments
from the store every poll interval, as the runtime re-reads aliases: a new one has its
candidate loaded, verified and smoke-tested in that thread before it gets traffic; a stopped one
stops routing. So every worker and replica follows starts and stops within seconds, and, since
assignment is a pure function of salt and unit, they agree on every unit's arm.

The same thread checks the A/B guardrails: model calls that raised (a 5xx) and model time per
arm as this worker saw them, every ``guardrail_seconds``; and, from the store (every worker's
traffic) every ``label_seconds``, the label error rate and requests refused by each version's
contract (422). A tripped guardrail stops the
experiment in the store (one worker wins; it sends the alert) and every worker falls back to
production.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slipway.backends import Backend, Outputs
from slipway.experiments.assignment import CONTROL, TREATMENT, Assigner
from slipway.experiments.desk import Alert, ExperimentDesk
from slipway.experiments.guardrails import ArmCounts, Guardrails, check_failures, check_latency
from slipway.predict import Model
from slipway.serving.routing import Production, Route
from slipway.serving.runtime import Runtime, Served
from slipway.store import experiments as book
from slipway.store.experiments import Experiment
from slipway.validation import Validated

logger = logging.getLogger("slipway.experiments")
_TIMES_KEPT = 5000  # model times per arm the latency guardrail reads (the most recent)
_RETRY_FIRST, _RETRY_MAX = 5.0, 300.0


class ObservedEngine:
    """A version's engine (:class:`~slipway.backends.Backend`) that records what the
    guardrails read: the time of each model call, and the calls that raised."""

    def __init__(self, engine: Backend, counts: ArmCounts) -> None:
        self.engine = engine
        self.name = engine.name
        self.counts = counts

    def outputs(self, checked: Validated, rows: np.ndarray | None) -> Outputs:
        """The engine's outputs, timed; an exception counts as a failure and propagates."""
        started = time.perf_counter()
        try:
            return self.engine.outputs(checked, rows)
        except Exception:
            self.counts.failures += 1
            raise
        finally:
            self.counts.times_ms.append((time.perf_counter() - started) * 1000)


def observed(served: Served, counts: ArmCounts) -> Served:
    """``served`` answering through an :class:`ObservedEngine` (same pipeline and contract)."""
    model = served.model
    wrapped = Model(model.pipeline, model.version, ObservedEngine(model.engine, counts))
    wrapped.contract = model.contract  # the same object, so its validation plan is shared
    return Served(wrapped, served.loaded_at)


@dataclass
class _Active:
    """A running experiment as one worker routes it."""

    experiment: Experiment
    production: Served  # the runtime's production version when this was built
    candidate: Served
    routes: dict[str, Route] = field(default_factory=dict)
    shadow_route: Route | None = None
    counts: dict[str, ArmCounts] = field(default_factory=dict)
    unit_index: int | None = None  # the unit field's position in positional rows
    assigner: Assigner | None = None
    # The request path, set up once (see ExperimentRouting._build): (unit_id, row) -> Route.
    pick: Callable[[str | None, Any], Route] | None = None

    @property
    def guardrails(self) -> Guardrails:
        return Guardrails.parse(self.experiment.config.get("guardrails"))


class ExperimentRouting:
    """Routes each request to production, an A/B arm or production plus a shadow.

    Build it with the runtime (it is a ``RoutingFactory``); ``alert`` receives guardrail stops
    (default: the monitoring sinks settings configure).
    """

    guardrail_seconds = 5.0
    label_seconds = 30.0

    def __init__(
        self,
        runtime: Runtime,
        *,
        alert: Alert | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.runtime = runtime
        if alert is None:
            from slipway.monitoring.sinks import alerter

            alert = alerter(runtime.registry.settings)
        self.desk = ExperimentDesk(runtime.registry, alert=alert)
        self.production = Production(runtime)
        self.draw = draw
        self._active: Mapping[str, _Active] = {}
        self._candidates: dict[tuple[str, int], Served] = {}
        self._failed: dict[tuple[str, int], tuple[float, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one check at a time (the watcher's, or a caller's)
        self._checked_at = 0.0
        self._labels_at = 0.0

    # -- what requests see -----------------------------------------------------------------

    def route(self, name: str, unit_id: str | None, row: Any = None) -> Route:
        """The Route of one request (see the module docstring)."""
        active = self._active.get(name)
        if active is None:
            return self.production.route(name, unit_id, row)
        production = self.runtime.routes.get(name)
        if production is None:
            return self.runtime.production_route(name)  # raises ModelNotFound
        if production.served is not active.production:
            active = self._rebuild(active, production.served)
        if active.shadow_route is not None:
            return active.shadow_route
        assert active.pick is not None
        return active.pick(unit_id, row)

    @property
    def active(self) -> Mapping[str, Experiment]:
        """The experiments this worker routes now, by model."""
        return {name: a.experiment for name, a in self._active.items()}

    # -- following the store ---------------------------------------------------------------

    def start(self) -> None:
        """Read the running experiments now, then follow them in a background thread."""
        try:
            self.check()
        except Exception as exc:  # the database may be briefly unreachable: keep serving
            logger.warning("could not read experiments: %s", exc)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="slipway-experiments", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop following experiments (a candidate load in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _watch(self) -> None:
        # The runtime's poll interval, at most a minute: the thread never waits unboundedly.
        while not self._stop.wait(min(self.runtime.poll_seconds, 60.0)):
            try:
                self.check()
            except Exception as exc:
                logger.warning("could not check experiments: %s", exc)

    def check(self) -> None:
        """One pass: follow starts, stops and split changes; check guardrails when due."""
        with self._lock:
            self._check()

    def _check(self) -> None:
        served = self.runtime.routes
        running = {e.model: e for e in book.all_running(self.runtime.registry.store)}
        running = {m: e for m, e in running.items() if m in served}
        active = dict(self._active)
        for name in list(active):
            if name not in running:
                logger.info("experiment %s stopped: %s answers alone", active[name].experiment.id,
                            name)  # fmt: skip
                del active[name]
        for name, e in running.items():
            current = active.get(name)
            if current is not None and current.experiment.updated_at == e.updated_at:
                continue
            candidate = self._candidate(name, e.candidate_version)
            if candidate is None:
                active.pop(name, None)
                continue
            active[name] = self._build(e, served[name].served, candidate)
            logger.info("experiment %s routing %s (%s)", e.id, name, e.mode)
        self._active = active
        self._guard()

    def _candidate(self, name: str, version: int) -> Served | None:
        key = (name, version)
        found = self._candidates.get(key)
        if found is not None:
            return found
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() < failed[0]:
            return None
        try:
            found = self.runtime.prepare(name, version)
        except Exception as exc:
            attempts = 1 if failed is None else failed[1] + 1
            delay = min(_RETRY_FIRST * 2 ** (attempts - 1), _RETRY_MAX)
            self._failed[key] = (time.monotonic() + delay, attempts)
            logger.error("experiment candidate %s:%s not routed: %s", name, version, exc)
            return None
        self._failed.pop(key, None)
        # Only the candidates of running experiments stay loaded.
        self._candidates = {k: v for k, v in self._candidates.items() if k[0] != name}
        self._candidates[key] = found
        return found

    def _build(
        self,
        e: Experiment,
        production: Served,
        candidate: Served,
        counts: dict[str, ArmCounts] | None = None,
    ) -> _Active:
        """Everything the request path needs, computed once per experiment (and again when
        production moves): the Routes, the keyed hash, the counters, and ``pick``."""
        active = _Active(e, production, candidate, assigner=Assigner(e.salt, e.split))
        if e.mode == "shadow":
            shadow = active.shadow_route = Route(production, CONTROL, e.id, candidate)
            active.pick = lambda unit_id, row: shadow
            return active
        for arm, served in ((CONTROL, production), (TREATMENT, candidate)):
            kept = counts.get(arm) if counts else None  # keep counting where they left off
            active.counts[arm] = kept or ArmCounts(times_ms=deque(maxlen=_TIMES_KEPT))
            active.routes[arm] = Route(observed(served, active.counts[arm]), arm, e.id)
        names = production.names
        if e.unit_field is not None and e.unit_field in names:
            active.unit_index = names.index(e.unit_field)
        active.pick = self._picker(active)
        return active

    def _picker(self, active: _Active) -> Callable[[str | None, Any], Route]:
        """The A/B request path: a unit id, its cached point, one comparison, one counter.

        Everything else (the routes, the split, the counters) is bound here once, so a request
        allocates nothing and touches no store, lock or log: about 0.3 us with a unit id.
        """
        e, assigner, draw = active.experiment, active.assigner, self.draw
        assert assigner is not None
        point = assigner.point
        control, treatment = active.routes[CONTROL], active.routes[TREATMENT]
        in_control, in_treatment = active.counts[CONTROL], active.counts[TREATMENT]
        field_name, index = e.unit_field, active.unit_index

        def pick(unit_id: str | None, row: Any) -> Route:
            split = assigner.split  # read each time: the assigner is the one source of truth
            if unit_id is not None:
                if point(unit_id) < split:
                    in_treatment.requests += 1
                    return treatment
                in_control.requests += 1
                return control
            unit = None
            if field_name is not None and row is not None:
                unit = _unit_of(row, field_name, index)
            if unit is None:  # no unit: this request alone is assigned at random
                chosen, counts = (treatment, in_treatment) if draw() < split else (
                    control, in_control)  # fmt: skip
                counts.requests += 1
                return chosen
            chosen, counts = (treatment, in_treatment) if point(unit) < split else (
                control, in_control)  # fmt: skip
            counts.requests += 1
            return Route(chosen.served, chosen.arm, e.id, None, unit)

        return pick

    def _rebuild(self, active: _Active, production: Served) -> _Active:
        """Production moved during the experiment: the new version answers as control."""
        rebuilt = self._build(active.experiment, production, active.candidate, active.counts)
        self._active = {**self._active, active.experiment.model: rebuilt}
        return rebuilt

    # -- guardrails ------------------------------------------------------------------------

    def _guard(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.guardrail_seconds:
            return
        self._checked_at = now
        labels_due = now - self._labels_at >= self.label_seconds
        if labels_due:
            self._labels_at = now
        for name, active in list(self._active.items()):
            e = active.experiment
            if e.mode != "ab":
                continue
            g = active.guardrails
            t, c = active.counts[TREATMENT], active.counts[CONTROL]
            checks = [check_failures(g, t, c), check_latency(g, t, c)]
            if labels_due:
                checks += self.desk.check_guardrails(e)
            if any(check.tripped for check in checks):
                stopped = self.desk.trip(e, checks)
                logger.error(
                    "experiment %s stopped by a guardrail: %s",
                    e.id,
                    stopped.stop_reason if stopped else "(already stopped)",
                )
                self._active = {k: v for k, v in self._active.items() if k != name}


def _unit_of(row: Any, field_name: str, index: int | None) -> str | None:
    """The unit a row names in the experiment's unit field (None when it names none)."""
    if isinstance(row, dict):
        value = row.get(field_name)
    elif index is not None and isinstance(row, list | tuple) and index < len(row):
        value = row[index]
    else:
        value = None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)
