"""Shadow scoring: a second version answers the same requests, off the critical path.

When a request's :class:`~slipway.serving.routing.Route` names a ``shadow`` version, the
answerer hands the request's rows to :class:`ShadowScorer` after the primary answer is built
and returns that answer at once. The scorer is a bounded queue and one worker thread: it
gathers queued requests for one version into one validate-and-predict call (as the
micro-batcher does for primary answers) and writes each request's shadow answers into the
request's :class:`ShadowSlot`. Nothing the shadow does can delay or fail the primary answer: a
full queue drops the shadow work (counted in ``slipway_shadow_dropped_total``), and an error
or a contract violation of the shadow version becomes ``{"error": ...}`` in its answers.

How shadow answers reach the prediction log: the request's log entry is queued as usual,
carrying its slot, and the log writer holds an entry whose slot is still open for at most
``wait_seconds`` (``SLIPWAY_SERVE_SHADOW_WAIT_SECONDS``) before writing it with or without the
shadow answers (see :mod:`slipway.serving.log`; the slot is
:class:`~slipway.store.predictions.ShadowSlot`). So each row is written once, by one INSERT or
COPY, with ``shadow_version`` and ``shadow_outputs`` filled, instead of being updated later
(an UPDATE per row doubles the write cost on PostgreSQL and races the row's own insert). A
shadow answer that comes later than the bound is dropped and counted (reason ``late``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slipway.serving.metrics import Metrics
from slipway.store.predictions import ShadowSlot

if TYPE_CHECKING:
    from slipway.serving.runtime import Served

logger = logging.getLogger("slipway.serving.shadow")


@dataclass(eq=False)
class _Job:
    served: Served
    names: Sequence[str]
    rows: Sequence[Any]
    slot: ShadowSlot
    queued_at: float = field(default_factory=time.monotonic)

    def records(self) -> list[Any]:
        """The rows as the log keeps them: ``{field: value}`` mappings (or a 2-D array)."""
        out = []
        for r in self.rows:
            if isinstance(r, dict):
                out.append(r)
            else:
                out.append(dict(zip(self.names, r, strict=True)))
        return out


@dataclass
class ShadowScorer:
    """A bounded queue of shadow work and the thread that scores it in merged calls."""

    metrics: Metrics
    max_rows: int = 10_000  # rows queued before new shadow work is dropped
    batch_rows: int = 64  # most rows in one merged call (short stretches holding the GIL)
    # Work older than this is skipped unscored: its log rows were written without it (the log
    # waits as long, and counts those rows as late).
    max_age: float = 1.0
    _queue: deque[_Job] = field(default_factory=deque, init=False)
    _rows: int = field(default=0, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _stopping: bool = field(default=False, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def depth(self) -> int:
        """Rows waiting for the shadow version."""
        return self._rows

    def submit(self, served: Served, names: Sequence[str], rows: Sequence[Any]) -> ShadowSlot:
        """Queue a request's rows for ``served``; the slot is filled later, or at once with None
        when the queue is full (never blocks)."""
        slot = ShadowSlot(served.version)
        n = len(rows)
        with self._cond:
            if self._stopping or self._rows + n > self.max_rows or self._thread is None:
                reason = "queue_full" if not self._stopping and self._thread else "stopped"
                full = True
            else:
                self._queue.append(_Job(served, names, rows, slot))
                self._rows += n
                self._cond.notify()
                full = False
        if full:
            self.metrics.shadow_dropped.labels(served.name, reason).inc(n)
            slot.fill(None)
        return slot

    def start(self) -> None:
        """Start the worker thread."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="slipway-shadow", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: queued work is dropped (counted), the call in progress finishes first."""
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._rows = 0
            self._cond.notify_all()
        for job in left:
            self.metrics.shadow_dropped.labels(job.served.name, "shutdown").inc(len(job.rows))
            job.slot.fill(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                stale = time.monotonic() - self.max_age
                while self._queue and self._queue[0].queued_at < stale:
                    self._rows -= len(self._queue.popleft().rows)
                if not self._queue:
                    continue
                first = self._queue.popleft()
                jobs, rows = [first], len(first.rows)
                while (
                    self._queue
                    and self._queue[0].served is first.served
                    and rows + len(self._queue[0].rows) <= self.batch_rows
                ):
                    job = self._queue.popleft()
                    jobs.append(job)
                    rows += len(job.rows)
                self._rows -= rows
            try:
                self._score(first.served, jobs)
            except Exception:  # the worker must survive anything a shadow version does
                logger.exception("shadow scoring failed")
                for job in jobs:
                    if not job.slot.done:
                        job.slot.fill([{"error": "internal error"}] * len(job.rows))

    def _score(self, served: Served, jobs: list[_Job]) -> None:
        """One merged call when every row is clean, else each request on its own.

        The worker lets go of the GIL between steps (``time.sleep(0)``), so the event loop
        never waits long for it while the shadow works: its Python stretches stay short.
        """
        model = served.model
        started = time.perf_counter()
        records = [r for job in jobs for r in job.records()]
        time.sleep(0)
        checked = model.contract.validate_clean(records)
        if checked is not None:
            time.sleep(0)
            try:
                predictions = model.infer(checked)
                time.sleep(0)
                outputs = None if predictions.warnings else predictions.records()
            except Exception:
                outputs = None
            if outputs is not None and len(outputs) == len(records):
                ms = (time.perf_counter() - started) * 1000
                start = 0
                for job in jobs:
                    n = len(job.rows)
                    self._done(served, job, outputs[start : start + n], ms, "ok")
                    start += n
                return
        for job in jobs:
            time.sleep(0)
            self._one(served, job)

    def _one(self, served: Served, job: _Job) -> None:
        model = served.model
        started = time.perf_counter()
        try:
            checked = model.validate(job.records())
            if checked.errors:
                shown = "; ".join(p.describe() for p in checked.errors[:3])
                outcome, error = "invalid", f"ContractViolation: {shown}"
                outputs = None
            else:
                predictions = model.infer(checked)
                outputs = predictions.records()
                for problem in predictions.warnings:
                    if problem.row is not None:
                        outputs[problem.row].setdefault("warnings", []).append(problem.to_dict())
                outcome, error = "ok", ""
        except Exception as exc:
            outcome, error, outputs = "error", f"{type(exc).__name__}: {exc}"[:500], None
        ms = (time.perf_counter() - started) * 1000
        if outputs is None:
            outputs = [{"error": error} for _ in job.rows]
        self._done(served, job, outputs, ms, outcome)

    def _done(
        self, served: Served, job: _Job, outputs: list[dict[str, Any]], ms: float, outcome: str
    ) -> None:
        rounded = round(ms, 3)
        job.slot.fill([{**out, "latency_ms": rounded} for out in outputs])
        counter, latency = self.metrics.shadowed(served.name, served.version, outcome)
        counter.inc(len(outputs))
        latency.observe(ms / 1000)
