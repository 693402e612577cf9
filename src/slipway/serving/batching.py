"""Adaptive micro-batching: concurrent requests for one served version share one model call.

A request hands its rows and its :class:`~slipway.serving.routing.Route` to :class:`MicroBatcher`
and awaits its own :class:`Answer`. Batches gather per answering version (``route.served``):
requests that one version answers share a call whatever arm each was routed through, and each
keeps its own route (arm, experiment) in the log. The first request for a version opens a batch
and schedules its run: on the next turn of the event loop (``max_wait=0``, the default), or
after ``max_wait`` seconds. Every request for the same version
that arrives before then joins it, up to ``max_rows`` rows (a full batch runs at once). So a
lone request waits for nothing, and under load the batch grows with the number of requests in
flight: the rows are validated in one pass, predicted in one call, and split back.

Results are those of answering each request alone: rows are predicted independently, the same
version answers all of them, and each request gets its own prediction ids, log entry, metrics
and latency. Only clean batches are merged (every value of the exact type and within the
contract, checked by the validation fast path); when any row of the batch is not, or the merged
call fails, each request is answered on its own, so a request that breaks the contract gets its
own 422 and costs the others nothing but the lost merge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slipway.predict import Predictions
from slipway.serving.answering import Answer, Answerer
from slipway.serving.limits import check_rows
from slipway.serving.routing import Route
from slipway.serving.runtime import Served

logger = logging.getLogger("slipway.serving.batching")


@dataclasses.dataclass(eq=False)
class _Request:
    route: Route
    rows: list[Any]
    scope: MutableMapping[str, Any]
    unit_ids: Sequence[str | None] | None
    future: asyncio.Future[Answer]


@dataclasses.dataclass(eq=False)
class _Batch:
    served: Served
    requests: list[_Request] = dataclasses.field(default_factory=list)
    rows: int = 0
    handle: asyncio.Handle | None = None


class MicroBatcher:
    """Gathers concurrent requests per served version into one validate-and-predict call.

    ``max_rows`` caps the rows of one merged call (1 turns batching off); ``max_wait`` is the
    longest a request waits for company, in seconds (0: only requests already in flight).
    """

    def __init__(self, answerer: Answerer, *, max_rows: int = 256, max_wait: float = 0.0) -> None:
        self.answerer, self.max_rows, self.max_wait = answerer, max_rows, max_wait
        self._open: dict[int, _Batch] = {}  # id(served) -> the batch gathering for it
        self._executor: ThreadPoolExecutor | None = None

    async def answer(
        self,
        route: Route,
        rows: list[Any],
        *,
        scope: MutableMapping[str, Any],
        unit_ids: Sequence[str | None] | None = None,
    ) -> Answer:
        """Answer one request (as :meth:`Answerer.answer`), batched with concurrent ones."""
        n = len(rows)
        served = route.served
        if self.max_rows <= 1 or n >= self.max_rows:
            self.answerer.metrics.batched(served.name, served.version).observe(1)
            if served.model.enricher is not None:
                return await self.answerer.answer_off_loop(
                    route, rows, scope=scope, unit_ids=unit_ids
                )
            return self.answerer.answer(route, rows, scope=scope, unit_ids=unit_ids)
        check_rows(n, self.answerer.max_rows)
        loop = asyncio.get_running_loop()
        batch = self._open.get(id(served))
        if batch is not None and batch.rows + n > self.max_rows:
            self._run(batch)  # this request would overflow it: send what is gathered now
            batch = None
        if batch is None:
            batch = _Batch(served)
            self._open[id(served)] = batch
            if self.max_wait > 0:
                batch.handle = loop.call_later(self.max_wait, self._run, batch)
            else:
                batch.handle = loop.call_soon(self._run, batch)
        future: asyncio.Future[Answer] = loop.create_future()
        batch.requests.append(_Request(route, rows, scope, unit_ids, future))
        batch.rows += n
        if batch.rows >= self.max_rows:
            self._run(batch)
        return await future

    def _run(self, batch: _Batch) -> None:
        if self._open.get(id(batch.served)) is batch:
            del self._open[id(batch.served)]
        if batch.handle is not None:
            batch.handle.cancel()
            batch.handle = None
        requests = [r for r in batch.requests if not r.future.done()]  # cancelled: nobody waits
        batch.requests = []
        if not requests:
            return
        served = batch.served
        if served.model.enricher is not None:
            # Features read the event store: answer in the worker thread so the loop keeps
            # taking requests (which gather into the next batch meanwhile).
            loop = asyncio.get_running_loop()

            def work() -> None:
                outcomes = self._outcomes(served, requests)
                loop.call_soon_threadsafe(_deliver, outcomes)

            self._worker().submit(work)
            return
        _deliver(self._outcomes(served, requests))

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="slipway-features")
        return self._executor

    def _outcomes(self, served: Served, requests: list[_Request]) -> list[_Outcome]:
        """Each request's Answer (or error): merged into one call when every row is clean."""
        sizes = self.answerer.metrics.batched(served.name, served.version)
        if len(requests) > 1:
            try:
                merged = self._merged(served, requests)
                if merged is not None:
                    sizes.observe(len(requests))
                    return merged
            except Exception:
                logger.exception("a merged batch failed; answering its requests one by one")
        out: list[_Outcome] = []
        for r in requests:
            sizes.observe(1)
            try:
                out.append(
                    (r, self.answerer.answer(r.route, r.rows, scope=r.scope, unit_ids=r.unit_ids))
                )
            except Exception as exc:
                out.append((r, exc))
        return out

    def _merged(self, served: Served, requests: list[_Request]) -> list[_Outcome] | None:
        """Answer clean requests in one call; None (nothing done) if any row is not clean."""
        model = served.model
        rows = [row for r in requests for row in r.rows]
        checked = model.contract.validate_clean(rows)
        if checked is None:
            return None
        predictions = model.infer(checked)
        if predictions.warnings or len(predictions) != len(rows):
            return None
        outputs = predictions.records()
        ids = self.answerer.ids.new(len(rows))
        bounds, start = [], 0
        for r in requests:
            bounds.append((start, start + len(r.rows)))
            start += len(r.rows)
        answers = self.answerer.finish_many(
            served,
            [(r.route, r.rows, r.scope, r.unit_ids) for r in requests],
            [_part(predictions, a, b) for a, b in bounds],
            [outputs[a:b] for a, b in bounds],
            [ids[a:b] for a, b in bounds],
        )
        return list(zip(requests, answers, strict=True))


_Outcome = tuple[_Request, "Answer | Exception"]


def _deliver(outcomes: list[_Outcome]) -> None:
    """Hand each waiting request its result (on the event loop)."""
    for r, result in outcomes:
        if r.future.done():
            continue
        if isinstance(result, Exception):
            r.future.set_exception(result)
        else:
            r.future.set_result(result)


def _part(p: Predictions, start: int, stop: int) -> Predictions:
    """The predictions of rows ``start:stop`` of a merged call, numbered from 0."""
    return Predictions(
        p.model,
        p.version,
        p.task,
        p.rows[start:stop] - start,
        None if p.labels is None else p.labels[start:stop],
        None if p.probabilities is None else p.probabilities[start:stop],
        p.classes,
        None if p.values is None else p.values[start:stop],
        features={k: v[start:stop] for k, v in p.features.items()},
    )
