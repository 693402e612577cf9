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

The arms of an A/B test split each turn's requests between two versions, so two batches fill
where one did. When a batch runs on the loop, the open batches of the same model's other
versions run with it (:meth:`MicroBatcher._siblings`): each version still validates and
predicts its own rows in its own call, but one pass names, logs and counts the requests of all
of them (one set of ids, one hand-over to the log, one callback), so a split costs one more
model call a turn and little else. Batches that run in the thread pool are not taken along:
each keeps its version's share of the pool.

Calls that run in the thread pool (see :meth:`MicroBatcher.offloaded`) keep gathering while
their version already has as many calls in the pool as the pool has threads: a batch that is
due then waits, open to more requests, until one of those calls ends. Without that, a busy pool
queues many small batches (each formed in one turn of the loop) instead of a few large ones,
and every call pays its fixed cost (a scikit-learn call, the enrichment's reads of the event
store) for a few rows.

Calls to a version with features (enrichment reads the event store) run in the thread pool,
except small ones measured to be cheap: while the CPU time of that version's enriched calls
of at most ``feature_loop_rows`` rows (a running average over them, on the loop or in the
pool) stays within ``feature_loop_ms``, and its enricher only reads a local SQLite file (no
network round trip, no write transaction), those calls answer on the loop as small ONNX calls
do. Larger calls (merged under load) stay in the pool, which keeps the loop free for the next
requests. Off the loop each small request crossed from the loop to a pool thread and back,
and under load every crossing waited for the GIL, held by the loop or the other thread in
turn: traced at 30% load, a request whose enrichment took 0.5 ms spent 2 ms (p50) to 23 ms
(p99) in the server, the waits spread over each hand-over. A version is measured in the pool
first, so a costly one never blocks the loop.

Results are those of answering each request alone: rows are predicted independently, the same
version answers all of them, and each request gets its own prediction ids, log entry, metrics
and latency. Only clean batches are merged (every value of the exact type and within the
contract, checked by the validation fast path); when any row of the batch is not, or the merged
call fails, each request is answered on its own, so a request that breaks the contract gets its
own 422 and costs the others nothing but the lost merge.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import time
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import Executor
from typing import Any

from slipway.predict import Predictions
from slipway.serving.answering import Answer, Answerer
from slipway.serving.limits import check_rows
from slipway.serving.routing import Route
from slipway.serving.runtime import Served

logger = logging.getLogger("slipway.serving.batching")

_COST_WEIGHT = 0.2  # the newest call's weight in a version's running cost of enriched calls


@dataclasses.dataclass(eq=False)
class _Request:
    route: Route
    rows: list[Any]
    scope: MutableMapping[str, Any]
    unit_ids: Sequence[str | None] | None
    future: asyncio.Future[Answer]


@dataclasses.dataclass(eq=False)
class _Merged:
    """One version's merged call: its requests, and the predictions of all their rows."""

    served: Served
    requests: list[_Request]
    predictions: Predictions
    outputs: list[dict[str, Any]]


@dataclasses.dataclass(eq=False)
class _Batch:
    served: Served
    requests: list[_Request] = dataclasses.field(default_factory=list)
    rows: int = 0
    handle: asyncio.Handle | None = None
    due: bool = False  # its run was held back while its version's pool share was busy


class MicroBatcher:
    """Gathers concurrent requests per served version into one validate-and-predict call.

    ``max_rows`` caps the rows of one merged call (1 turns batching off); ``max_wait`` is the
    longest a request waits for company, in seconds (0: only requests already in flight).
    With a thread ``pool``, calls that can take long (every call to a scikit-learn-served
    version, and ONNX calls of at least ``offload_rows`` rows) validate and predict in it, off
    the event loop; naming, logging and counting stay on the loop, so the answers, errors, log
    and metrics are those of a call on the loop. Calls to a version with features always take
    that path (in asyncio's default executor when there is no ``pool``), except calls of at
    most ``feature_loop_rows`` rows to a version whose enriched calls cost at most
    ``feature_loop_ms`` milliseconds of CPU and read a local SQLite file only (see
    :meth:`offloaded`; 0: never).
    ``cpu_clock`` is the clock enriched calls are measured with (tests pass a fake one).
    """

    def __init__(
        self,
        answerer: Answerer,
        *,
        max_rows: int = 256,
        max_wait: float = 0.0,
        pool: Executor | None = None,
        offload_rows: int = 64,
        in_flight: int | None = None,
        feature_loop_ms: float = 0.0,
        feature_loop_rows: int = 32,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.answerer, self.max_rows, self.max_wait = answerer, max_rows, max_wait
        self.pool, self.offload_rows = pool, offload_rows
        self.feature_loop, self.cpu_clock = feature_loop_ms / 1000, cpu_clock
        self.feature_loop_rows = feature_loop_rows
        # (name, version) -> running CPU seconds per enriched call of at most feature_loop_rows
        # rows (not id(served): a reloaded version's new object may reuse a dropped one's id)
        self._cost: dict[tuple[str, int], float] = {}
        # Off-loop calls of one version at a time: the pool's threads by default.
        threads = getattr(pool, "_max_workers", None) or os.cpu_count() or 1
        self.in_flight = max(1, in_flight if in_flight is not None else int(threads))
        self._open: dict[int, _Batch] = {}  # id(served) -> the batch gathering for it
        self._busy: dict[int, int] = {}  # id(served) -> its off-loop calls running now
        self._held: dict[int, collections.deque[_Batch]] = {}  # full batches waiting their turn
        self._running: set[asyncio.Task[None]] = set()  # off-loop batches (kept referenced)

    def offloaded(self, served: Served, rows: int) -> bool:
        """Whether a call of ``rows`` rows to ``served`` runs in the thread pool."""
        enricher = served.model.enricher
        if enricher is not None:
            # Enrichment reads the event store: on the loop only when that was measured cheap
            # and cannot wait on a network or a lock.
            cost = self._cost.get((served.name, served.version))
            return not (
                cost is not None
                and cost <= self.feature_loop
                and rows <= self.feature_loop_rows
                and served.model.engine.name == "onnx"
                and getattr(enricher, "local_reads", False)
            )
        if self.pool is None:
            return False
        return served.model.engine.name != "onnx" or rows >= self.offload_rows

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
            return await self.answerer.answer_off_loop(
                route,
                rows,
                scope=scope,
                unit_ids=unit_ids,
                pool=self.pool,
                offload=self.offloaded(served, n),
            )
        check_rows(n, self.answerer.max_rows)
        loop = asyncio.get_running_loop()
        batch = self._open.get(id(served))
        if batch is not None and batch.rows + n > self.max_rows:
            del self._open[id(served)]
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
        key = id(batch.served)
        if batch.handle is not None:
            batch.handle.cancel()
            batch.handle = None
        batch.requests = [r for r in batch.requests if not r.future.done()]  # cancelled
        requests = batch.requests
        if not requests:
            if self._open.get(key) is batch:
                del self._open[key]
            return
        served = batch.served
        if self.offloaded(served, batch.rows):
            if self._busy.get(key, 0) >= self.in_flight:
                self._hold(batch)
                return
            if self._open.get(key) is batch:
                del self._open[key]
            batch.requests = []
            self._busy[key] = self._busy.get(key, 0) + 1
            task = asyncio.get_running_loop().create_task(self._run_off(served, requests))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: self._released(key))
            return
        if self._open.get(key) is batch:
            del self._open[key]
        batch.requests = []
        groups = [(served, requests)]
        if len(self._open) > 0:
            groups += self._siblings(served)
        finished: list[_Merged] = []
        for version, waiting in groups:
            self._run_version(version, waiting, len(groups) > 1, finished)
        if finished:
            self._finish_merged(finished)

    def _siblings(self, served: Served) -> list[tuple[Served, list[_Request]]]:
        """The open batches of the model's other versions (A/B arms) that answer on the loop,
        taken out to run in this turn with ``served``'s: one pass over the loop, one log
        hand-over and one set of ids for every arm, instead of one per arm (each arm's own
        model call stays apart)."""
        taken = []
        for key, other in list(self._open.items()):
            version = other.served
            if version.name != served.name or version is served:
                continue
            waiting = [r for r in other.requests if not r.future.done()]
            if not waiting or self.offloaded(version, sum(len(r.rows) for r in waiting)):
                continue
            del self._open[key]
            if other.handle is not None:
                other.handle.cancel()
                other.handle = None
            other.requests = []
            taken.append((version, waiting))
        return taken

    def _run_version(
        self,
        served: Served,
        requests: list[_Request],
        together: bool,
        finished: list[_Merged],
    ) -> None:
        """Answer one version's requests on the loop: one merged call when they are clean
        (kept in ``finished`` to be named and logged with the other arms'), else one by one.
        ``together``: other arms run in this turn too, so even a lone request tries the
        merged path (to share their hand-over)."""
        sizes = self.answerer.metrics.batched(served.name, served.version)
        if len(requests) > 1 or together:
            try:
                rows = [row for r in requests for row in r.rows]
                merged = self._measured(served, len(rows), self._infer_merged, served, rows)
                if merged is not None:
                    sizes.observe(len(requests))
                    finished.append(_Merged(served, requests, *merged))
                    return
            except Exception:
                logger.exception("a merged batch failed; answering its requests one by one")
        for r in requests:
            if r.future.done():
                continue
            sizes.observe(1)
            try:
                check_rows(len(r.rows), self.answerer.max_rows)
                inferred = self._measured(served, len(r.rows), self.answerer.infer, r.route, r.rows)
                r.future.set_result(
                    self.answerer.conclude(
                        r.route, r.rows, inferred, scope=r.scope, unit_ids=r.unit_ids
                    )
                )
            except Exception as exc:
                r.future.set_exception(exc)

    def _hold(self, batch: _Batch) -> None:
        """Keep a due batch until its version has a pool thread: the open one stays open to
        more requests while it has room; a full one (or one a request overflowed) queues."""
        key = id(batch.served)
        if self._open.get(key) is batch and batch.rows < self.max_rows:
            batch.due = True
            return
        if self._open.get(key) is batch:
            del self._open[key]
        self._held.setdefault(key, collections.deque()).append(batch)

    def _released(self, key: int) -> None:
        """An off-loop call of version ``key`` ended: run what waited for it, oldest first."""
        self._busy[key] -= 1
        if not self._busy[key]:
            del self._busy[key]
        held = self._held.get(key)
        if held:
            batch = held.popleft()
            if not held:
                del self._held[key]
            self._run(batch)
            return
        gathering = self._open.get(key)
        if gathering is not None and gathering.due:
            self._run(gathering)

    async def _run_off(self, served: Served, requests: list[_Request]) -> None:
        """:meth:`_run` with the model calls in the thread pool."""
        loop = asyncio.get_running_loop()
        sizes = self.answerer.metrics.batched(served.name, served.version)
        if len(requests) > 1:
            rows = [row for r in requests for row in r.rows]
            try:
                merged = await loop.run_in_executor(
                    self.pool, self._measured, served, len(rows), self._infer_merged, served, rows
                )
                if merged is not None:
                    sizes.observe(len(requests))
                    self._finish_merged([_Merged(served, requests, *merged)])
                    return
            except Exception:
                logger.exception("a merged batch failed; answering its requests one by one")
        for r in requests:
            if r.future.done():
                continue
            sizes.observe(1)
            try:
                check_rows(len(r.rows), self.answerer.max_rows)
                inferred = await loop.run_in_executor(
                    self.pool, self._measured, served, len(r.rows), self.answerer.infer,
                    r.route, r.rows,
                )  # fmt: skip
                answer = self.answerer.conclude(
                    r.route, r.rows, inferred, scope=r.scope, unit_ids=r.unit_ids
                )
            except Exception as exc:
                if not r.future.done():
                    r.future.set_exception(exc)
                continue
            if not r.future.done():
                r.future.set_result(answer)

    def _measured(self, served: Served, rows: int, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``; for a version with features and a call of at most
        ``feature_loop_rows`` rows, its CPU time joins the version's running cost
        (:meth:`offloaded`). Runs on the loop or in a pool thread: ``cpu_clock`` counts the
        calling thread's time only. Two threads updating at once may lose one call's share: a
        running average can afford it."""
        if served.model.enricher is None or rows > self.feature_loop_rows:
            return call(*args)
        start = self.cpu_clock()
        try:
            return call(*args)
        finally:
            spent = self.cpu_clock() - start
            key = (served.name, served.version)
            cost = self._cost.get(key)
            self._cost[key] = spent if cost is None else cost + _COST_WEIGHT * (spent - cost)

    def _infer_merged(
        self, served: Served, rows: list[Any]
    ) -> tuple[Predictions, list[dict[str, Any]]] | None:
        """Validate and predict the merged rows (thread-safe); None if any row is not clean."""
        model = served.model
        checked = model.contract.validate_clean(rows)
        if checked is None:
            return None
        predictions = model.infer(checked)
        if predictions.warnings or len(predictions) != len(rows):
            return None
        return predictions, predictions.records()

    def _finish_merged(self, calls: list[_Merged]) -> None:
        """Split merged calls (one per version: A/B arms answered in one turn) back into their
        requests; name, log and count those still waiting, all at once (one cancelled while
        the call ran in the pool gets nothing logged)."""
        waiting: list[tuple[_Request, Predictions, list[dict[str, Any]]]] = []
        for call in calls:
            start = 0
            for r in call.requests:
                a, start = start, start + len(r.rows)
                if not r.future.done():
                    waiting.append((r, _part(call.predictions, a, start), call.outputs[a:start]))
        if not waiting:
            return
        ids = self.answerer.ids.new(sum(len(out) for _, _, out in waiting))
        own, at = [], 0
        for _, _, out in waiting:
            own.append(ids[at : at + len(out)])
            at += len(out)
        answers = self.answerer.finish_many(
            [(r.route, r.rows, r.scope, r.unit_ids) for r, _, _ in waiting],
            [p for _, p, _ in waiting],
            [out for _, _, out in waiting],
            own,
        )
        for (r, _, _), result in zip(waiting, answers, strict=True):
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
