"""The hot path every prediction route shares: validate, predict, name, log, count.

Routes parse their own body format into rows, ask :meth:`Runtime.route` which version answers,
and hand both here; :class:`Answerer` validates the rows against that version's contract
(numpy, every problem at once), predicts through the one prediction core (:meth:`Model.infer`),
gives each row a time-sortable ``prediction_id``, queues the predictions for the log (with the
route's arm and experiment) and counts them; when the route names a shadow version, it hands
the rows to the shadow scorer (``shadow.py``) once the answer is built. Nothing here touches the
database (except the enrichment of a version with features, in :meth:`Answerer.infer`, which
then runs off the loop) or waits for the shadow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from slipway.clock import utcnow
from slipway.exceptions import ContractViolation
from slipway.predict import Predictions
from slipway.serving import scope as scopes
from slipway.serving.limits import check_rows
from slipway.serving.log import Entry, Failure, IdGenerator, PredictionLog, ShadowSlot
from slipway.serving.metrics import Metrics
from slipway.serving.routing import Route
from slipway.serving.runtime import Served
from slipway.serving.shadow import ShadowScorer

UnitIds = Sequence[str | None] | None
# Problems kept per refused request in validation_failures (the response lists them all).
_LOGGED_PROBLEMS = 100


@dataclass
class Answer:
    """The outcome of one request: the version that answered, ids, and one output per row.

    ``outputs[i]`` is what the log stores for row ``i``: one item of
    :meth:`Predictions.records` plus ``warnings`` when the row was flagged.
    """

    served: Served
    ids: list[str]
    predictions: Predictions
    outputs: list[dict[str, Any]]

    def items(self) -> list[dict[str, Any]]:
        """The response's predictions: ``prediction_id`` followed by the output."""
        return [
            {"prediction_id": pid, **out} for pid, out in zip(self.ids, self.outputs, strict=True)
        ]


def loggable(predictions: Predictions) -> dict[str, list[Any]] | None:
    """Computed features of the scored rows as JSON-ready lists (None without features)."""
    if not predictions.features:
        return None
    return {k: v.tolist() for k, v in predictions.features.items()}


@dataclass
class Inferred:
    """What the model made of one request's rows: the contract problems (then nothing else),
    or the predictions and one output per row."""

    errors: Sequence[Any] = ()
    predictions: Predictions | None = None
    outputs: list[dict[str, Any]] | None = None


class Answerer:
    """Validates, predicts, logs and counts; shared by the V1, V2 and MLflow routes."""

    def __init__(
        self,
        log: PredictionLog,
        metrics: Metrics,
        *,
        max_rows: int,
        ids: IdGenerator | None = None,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.log, self.metrics, self.max_rows = log, metrics, max_rows
        self.ids = ids or IdGenerator()
        self.shadow = shadow

    def answer(
        self,
        route: Route,
        rows: Any,
        *,
        scope: MutableMapping[str, Any],
        log_rows: Sequence[Any] | None = None,
        unit_ids: Sequence[str | None] | None = None,
    ) -> Answer:
        """Predict ``rows`` (records, positional rows or a 2-D array) with the routed version.

        A version with features reads the event store here: call it off the event loop
        (:meth:`answer_off_loop`).

        ``log_rows`` are the rows as the log should keep them when ``rows`` is not a list of
        JSON values (e.g. a tensor). Raises ContractViolation listing every problem.
        """
        check_rows(len(rows), self.max_rows)
        inferred = self.infer(route, rows)
        return self.conclude(
            route, rows, inferred, scope=scope, log_rows=log_rows, unit_ids=unit_ids
        )

    def infer(self, route: Route, rows: Any) -> Inferred:
        """Validate and predict, nothing else: no log, no metrics, no ids. Safe to run in a
        worker thread (the service runs long model calls off the event loop this way)."""
        model = route.served.model
        checked = model.validate(rows)
        if checked.errors:
            return Inferred(checked.errors)
        predictions = model.infer(checked)
        outputs = predictions.records()
        for problem in predictions.warnings:
            if problem.row is not None:
                outputs[problem.row].setdefault("warnings", []).append(problem.to_dict())
        return Inferred((), predictions, outputs)

    def conclude(
        self,
        route: Route,
        rows: Any,
        inferred: Inferred,
        *,
        scope: MutableMapping[str, Any],
        log_rows: Sequence[Any] | None = None,
        unit_ids: Sequence[str | None] | None = None,
    ) -> Answer:
        """What :meth:`answer` does after :meth:`infer`: refuse (ContractViolation, logged
        and counted) or name, log and count the predictions. On the event loop."""
        served = route.served
        if inferred.errors:
            self._refused(served, len(rows), inferred.errors)
            raise ContractViolation(list(inferred.errors), served.model.ref)
        assert inferred.predictions is not None and inferred.outputs is not None
        return self.finish(
            route,
            rows if log_rows is None else log_rows,
            inferred.predictions,
            inferred.outputs,
            scope=scope,
            unit_ids=unit_ids,
        )

    async def answer_off_loop(
        self,
        route: Route,
        rows: Any,
        *,
        scope: MutableMapping[str, Any],
        log_rows: Sequence[Any] | None = None,
        unit_ids: Sequence[str | None] | None = None,
        pool: Executor | None = None,
        offload: bool = False,
    ) -> Answer:
        """:meth:`answer` with :meth:`infer` in the thread ``pool`` (None: asyncio's default
        executor) when ``offload`` is true (the service asks
        :meth:`~slipway.serving.batching.MicroBatcher.offloaded`, which sends a version with
        features there unless its calls were measured cheap); :meth:`conclude` stays on the
        event loop. The answers, errors, log and metrics are those of :meth:`answer`."""
        if not offload:
            return self.answer(route, rows, scope=scope, log_rows=log_rows, unit_ids=unit_ids)
        check_rows(len(rows), self.max_rows)
        loop = asyncio.get_running_loop()
        inferred = await loop.run_in_executor(pool, self.infer, route, rows)
        return self.conclude(
            route, rows, inferred, scope=scope, log_rows=log_rows, unit_ids=unit_ids
        )

    def finish(
        self,
        route: Route,
        rows: Sequence[Any],
        predictions: Predictions,
        outputs: list[dict[str, Any]],
        *,
        scope: MutableMapping[str, Any],
        unit_ids: Sequence[str | None] | None = None,
        ids: list[str] | None = None,
    ) -> Answer:
        """Name, log and count the predictions of one request (``rows`` as the log keeps them)."""
        served = route.served
        n = len(outputs)
        ids = self.ids.new(n) if ids is None else ids
        started = scope.get(scopes.STARTED)
        seconds = time.perf_counter() - started if started is not None else 0.0
        self.log.put(
            Entry(
                ids,
                utcnow(),
                served.name,
                served.version,
                served.names,
                rows,
                outputs,
                round(seconds * 1000, 3),
                _units(route, unit_ids, n),
                route.arm,
                route.experiment,
                self._shadow(route, rows),
                features=loggable(predictions),
            )
        )
        ok, latency, counted = self.metrics.served(served.name, served.version)
        ok.inc()
        latency.observe(seconds)
        counted.inc(n)
        scope[scopes.SERVED] = (served.name, served.version, n)
        return Answer(served, ids, predictions, outputs)

    def finish_many(
        self,
        requests: Sequence[tuple[Route, Sequence[Any], MutableMapping[str, Any], UnitIds]],
        predictions: Sequence[Predictions],
        outputs: Sequence[list[dict[str, Any]]],
        ids: Sequence[list[str]],
    ) -> list[Answer]:
        """:meth:`finish` for the requests of merged calls (one per version: the arms of an A/B
        test answered in one turn), each answered by its route's version: ``requests[i]`` is
        (route, rows, scope, unit_ids) of request ``i``. One timestamp, one queue lock,
        counters bumped once per version."""
        now, created = time.perf_counter(), utcnow()
        entries: list[Entry | Failure] = []
        answers: list[Answer] = []
        tallies: dict[int, _Tally] = {}  # id(served) -> its counters and counts
        for (route, rows, scope, unit_ids), out, pids, p in zip(
            requests, outputs, ids, predictions, strict=True
        ):
            served = route.served
            tally = tallies.get(id(served))
            if tally is None:
                counters = self.metrics.served(served.name, served.version)
                tally = tallies[id(served)] = _Tally(*counters)
            tally.requests += 1
            tally.rows += len(out)
            started = scope.get(scopes.STARTED)
            seconds = now - started if started is not None else 0.0
            tally.latency.observe(seconds)
            ms = round(seconds * 1000, 3)
            entries.append(
                Entry(
                    pids,
                    created,
                    served.name,
                    served.version,
                    served.names,
                    rows,
                    out,
                    ms,
                    _units(route, unit_ids, len(out)),
                    route.arm,
                    route.experiment,
                    self._shadow(route, rows),
                    features=loggable(p),
                )
            )
            scope[scopes.SERVED] = (served.name, served.version, len(out))
            answers.append(Answer(served, pids, p, out))
        self.log.put_many(entries)
        for tally in tallies.values():
            tally.ok.inc(tally.requests)
            tally.counted.inc(tally.rows)
        return answers

    def _shadow(self, route: Route, rows: Sequence[Any]) -> ShadowSlot | None:
        """Hand the rows to the shadow version (never waits); the slot its answers land in."""
        if route.shadow is None or self.shadow is None:
            return None
        return self.shadow.submit(route.shadow, route.served.names, rows)

    def _refused(self, served: Served, n: int, problems: Sequence[Any]) -> None:
        self.log.put(
            Failure(
                utcnow(),
                served.name,
                served.version,
                n,
                [p.to_dict() for p in problems[:_LOGGED_PROBLEMS]],
            )
        )
        version = str(served.version)
        self.metrics.validation_failures.labels(served.name, version).inc()
        self.metrics.model_requests.labels(served.name, version, "invalid").inc()


@dataclass(slots=True)
class _Tally:
    """One version's request counters, and what :meth:`Answerer.finish_many` adds to them."""

    ok: Any
    latency: Any
    counted: Any
    requests: int = 0
    rows: int = 0


def _units(route: Route, unit_ids: UnitIds, n: int) -> UnitIds:
    """The rows' unit ids as the body gave them, else the one the route assigned by."""
    if unit_ids is None and route.unit_id is not None:
        return [route.unit_id] * n
    return unit_ids
