"""The hot path every prediction route shares: validate, predict, name, log, count.

Routes parse their own body format into rows and hand them here; :class:`Scorer` validates them
against the served version's contract (numpy, every problem at once), predicts through the one
prediction core (:meth:`Model.infer`), gives each row a time-sortable ``prediction_id``, queues
the predictions for the log and counts them. Nothing here touches the database.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from slipway.clock import utcnow
from slipway.exceptions import ContractViolation
from slipway.predict import Predictions
from slipway.serving.limits import check_rows
from slipway.serving.log import Entry, Failure, IdGenerator, PredictionLog
from slipway.serving.metrics import Metrics
from slipway.serving.runtime import Served

UnitIds = Sequence[str | None] | None
# Problems kept per refused request in validation_failures (the response lists them all).
_LOGGED_PROBLEMS = 100


@dataclass
class Scored:
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


class Scorer:
    """Validates, predicts, logs and counts; shared by the V1, V2 and MLflow routes."""

    def __init__(
        self, log: PredictionLog, metrics: Metrics, *, max_rows: int, ids: IdGenerator | None = None
    ) -> None:
        self.log, self.metrics, self.max_rows = log, metrics, max_rows
        self.ids = ids or IdGenerator()

    def score(
        self,
        served: Served,
        rows: Any,
        *,
        scope: MutableMapping[str, Any],
        log_rows: Sequence[Any] | None = None,
        unit_ids: Sequence[str | None] | None = None,
    ) -> Scored:
        """Score ``rows`` (records, positional rows or a 2-D array) with one served version.

        A version with features reads the event store here: call it off the event loop
        (:meth:`score_off_loop`).

        ``log_rows`` are the rows as the log should keep them when ``rows`` is not a list of
        JSON values (e.g. a tensor). Raises ContractViolation listing every problem.
        """
        model = served.model
        n = len(rows)
        check_rows(n, self.max_rows)
        checked = model.validate(rows)
        if checked.errors:
            self._refused(served, n, checked.errors)
            raise ContractViolation(checked.errors, model.ref)
        predictions = model.infer(checked)
        outputs = predictions.records()
        for problem in predictions.warnings:
            if problem.row is not None:
                outputs[problem.row].setdefault("warnings", []).append(problem.to_dict())
        return self.finish(
            served,
            rows if log_rows is None else log_rows,
            predictions,
            outputs,
            scope=scope,
            unit_ids=unit_ids,
        )

    async def score_off_loop(
        self,
        served: Served,
        rows: Any,
        *,
        scope: MutableMapping[str, Any],
        log_rows: Sequence[Any] | None = None,
        unit_ids: Sequence[str | None] | None = None,
    ) -> Scored:
        """:meth:`score`, in a worker thread when the version computes features (it reads the
        event store), on the event loop otherwise."""
        kw: dict[str, Any] = {"scope": scope, "log_rows": log_rows, "unit_ids": unit_ids}
        if served.model.enricher is None:
            return self.score(served, rows, **kw)
        return await run_in_threadpool(self.score, served, rows, **kw)

    def finish(
        self,
        served: Served,
        rows: Sequence[Any],
        predictions: Predictions,
        outputs: list[dict[str, Any]],
        *,
        scope: MutableMapping[str, Any],
        unit_ids: Sequence[str | None] | None = None,
        ids: list[str] | None = None,
    ) -> Scored:
        """Name, log and count the predictions of one request (``rows`` as the log keeps them)."""
        n = len(outputs)
        ids = self.ids.new(n) if ids is None else ids
        started = scope.get("slipway.started")
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
                unit_ids,
                features=loggable(predictions),
            )
        )
        ok, latency, counted = self.metrics.served(served.name, served.version)
        ok.inc()
        latency.observe(seconds)
        counted.inc(n)
        scope["slipway.served"] = (served.name, served.version, n)
        return Scored(served, ids, predictions, outputs)

    def finish_many(
        self,
        served: Served,
        requests: Sequence[tuple[Sequence[Any], MutableMapping[str, Any], UnitIds]],
        predictions: Sequence[Predictions],
        outputs: Sequence[list[dict[str, Any]]],
        ids: Sequence[list[str]],
    ) -> list[Scored]:
        """:meth:`finish` for the requests of one merged call: ``requests[i]`` is (rows, scope,
        unit_ids) of request ``i``. One timestamp, one queue lock, counters bumped once."""
        now, created = time.perf_counter(), utcnow()
        ok, latency, counted = self.metrics.served(served.name, served.version)
        entries: list[Entry | Failure] = []
        for (rows, scope, unit_ids), out, pids, p in zip(
            requests, outputs, ids, predictions, strict=True
        ):
            started = scope.get("slipway.started")
            seconds = now - started if started is not None else 0.0
            latency.observe(seconds)
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
                    unit_ids,
                    features=loggable(p),
                )
            )
            scope["slipway.served"] = (served.name, served.version, len(out))
        self.log.put_many(entries)
        ok.inc(len(entries))
        counted.inc(sum(len(out) for out in outputs))
        return [
            Scored(served, pids, p, out)
            for pids, p, out in zip(ids, predictions, outputs, strict=True)
        ]

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
