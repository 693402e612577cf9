"""Shadow scoring: a second version answers the same requests, off the critical path.

When a request's :class:`~slipway.serving.routing.Route` names a ``shadow`` version, the
answerer hands the request's rows to :class:`ShadowScorer` after the primary answer is built
and returns that answer at once. The scorer is a bounded queue and one worker thread, woken
per batch (``batch_rows`` queued, or the oldest ``interval`` old), not per request: it
gathers queued requests for one version into one validate-and-predict call (as the
micro-batcher does for primary answers) and writes each request's shadow answers into the
request's :class:`ShadowSlot`. Nothing the shadow does can delay or fail the primary answer: a
full queue drops the shadow work (counted in ``slipway_shadow_dropped_total``), and an error
or a contract violation of the shadow version becomes ``{"error": ...}`` in its answers. Every
row is counted once: scored, or dropped (``queue_full``, ``failing``, ``stalled``, ``late``,
``stopped``, ``shutdown``); :meth:`ShadowScorer.stop` does not wait for a stuck shadow call
beyond its timeout.

A version that cannot help is not given work it would waste: one whose every request failed
alone in two batches in a row is **failing**, and one whose call has run (or last ran) longer
than ``max_age`` is **stalled** (its answers come after their log rows were written). While a
version is failing or stalled, :meth:`ShadowScorer.submit` drops its work at once (reason
``failing`` or ``stalled``), before taking the queue's lock or making a slot, and lets one
request through every ``probe_interval`` seconds (none while a call of that version is still
running) to notice a recovery. So a candidate that raises on every row, or sleeps in every
call, costs the primary one dictionary lookup and one counter per request, and the log writes
those rows at once instead of holding them for the shadow answer.

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
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slipway.serving.metrics import Metrics
from slipway.store.predictions import ShadowSlot

if TYPE_CHECKING:
    from slipway.serving.runtime import Served

logger = logging.getLogger("slipway.serving.shadow")
# A version whose every request failed alone in this many batches in a row is failing: its work
# is dropped at submit (but for a probe every probe_interval), and when a merged call of it
# fails, that call's error stands for each of its requests (no call per request): a candidate
# that raises on every row must not cost the primary a call per request.
_FAILING_STREAK = 2


class _Health:
    """What :meth:`ShadowScorer.submit` knows of one shadow version. The worker writes it; the
    request path reads it without a lock (each read is of one attribute)."""

    __slots__ = ("call_started", "dropping", "probe_at", "served", "streak")

    def __init__(self, served: Served) -> None:
        # The version it describes (weak: a version unloaded is not kept alive by its health),
        # checked on lookup since health is found by id(served), which a new object may reuse.
        self.served = weakref.ref(served)
        self.dropping: str | None = None  # "failing" or "stalled": new work is dropped
        self.probe_at = 0.0  # monotonic time from which one request is let through again
        self.streak = 0  # batches in a row whose every request failed alone
        self.call_started = 0.0  # monotonic start of this version's call in progress (0: none)


@dataclass(eq=False, slots=True)
class _Job:
    served: Served
    names: Sequence[str]
    rows: Sequence[Any]
    slot: ShadowSlot
    queued_at: float

    def records(self, names: Sequence[str]) -> list[Any]:
        """The rows as the shadow version reads them: as sent when they are ``{field: value}``
        mappings or positional in its own field order (``names``), else as mappings."""
        if isinstance(self.rows, list) and (self.names is names or self.names == names):
            return self.rows
        out = []
        for r in self.rows:
            if isinstance(r, dict):
                out.append(r)
            else:
                out.append(dict(zip(self.names, r, strict=True)))
        return out


@dataclass
class ShadowScorer:
    """A bounded queue of shadow work and the thread that scores it in large merged calls.

    The thread wakes when ``batch_rows`` rows are queued or when the oldest queued work is
    ``interval`` seconds old, never for each request: under load the shadow version is called
    a few times a second on many rows at once, so it takes the GIL (and the event loop waits
    for it) rarely and briefly, and a request pays only for an append to a list.
    """

    metrics: Metrics
    max_rows: int = 10_000  # rows queued before new shadow work is dropped
    batch_rows: int = 256  # most rows in one merged call
    # Work older than this is skipped unscored: its log rows were written without it (the log
    # waits as long, and counts those rows as late).
    max_age: float = 1.0
    interval: float = 0.05  # longest queued work waits for company (capped at max_age / 4)
    # A failing or stalled version gets one request through this often, to notice a recovery.
    probe_interval: float = 1.0
    _queue: deque[_Job] = field(default_factory=deque, init=False)
    _rows: int = field(default=0, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _stopping: bool = field(default=False, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _running: list[_Job] = field(default_factory=list, init=False)  # the call in progress
    _dropped: dict[tuple[str, str], Any] = field(default_factory=dict, init=False)
    _health: dict[int, _Health] = field(default_factory=dict, init=False)  # by id(served)
    _closed: dict[int, ShadowSlot] = field(default_factory=dict, init=False)  # by version

    @property
    def depth(self) -> int:
        """Rows waiting for the shadow version (the call in progress included)."""
        return self._rows

    def submit(self, served: Served, names: Sequence[str], rows: Sequence[Any]) -> ShadowSlot:
        """Queue a request's rows for ``served``; the slot is filled later, or is a closed one
        (done, no answers) when the work is dropped at once (never blocks)."""
        n = len(rows)
        # Dropped before any other work: a full queue (read without the lock, checked again
        # under it), a version failing or stalled.
        if self._rows + n > self.max_rows:
            return self._dropped_slot(served, "queue_full", n)
        health = self._health.get(id(served))
        if (
            health is not None
            and (health.dropping is not None or health.call_started)
            and health.served() is served
        ):
            reason = self._refusal(health)
            if reason is not None:
                return self._dropped_slot(served, reason, n)
        slot = ShadowSlot(served.version)
        with self._cond:
            if self._stopping or self._thread is None:
                reason = "stopped"
            elif self._rows + n > self.max_rows:
                reason = "queue_full"
            else:
                reason = None
                queue = self._queue
                queue.append(_Job(served, names, rows, slot, time.monotonic()))
                self._rows += n
                # Wake the worker only to start its clock, or for a full batch.
                if len(queue) == 1 or self._rows >= self.batch_rows:
                    self._cond.notify()
        if reason is not None:
            slot.fill(None)
            self._drop(served.name, reason, n)
        return slot

    def _refusal(self, health: _Health) -> str | None:
        """Why a request's work for a failing or stalled version is dropped (None: let it
        through, as the probe of a failing or stalled one)."""
        now = time.monotonic()
        started = health.call_started
        if started and (health.dropping is not None or now - started > self.max_age):
            # A call runs that is stalled, or that a probe waits on: nothing queued now would
            # be answered before its log row is written.
            return health.dropping or "stalled"
        if health.dropping is None or now >= health.probe_at:
            if health.dropping is not None:
                health.probe_at = now + self.probe_interval  # this request is the probe
            return None
        return health.dropping

    def _dropped_slot(self, served: Served, reason: str, n: int) -> ShadowSlot:
        """Count ``n`` rows dropped for ``reason``; the closed slot of ``served``'s version
        (done, no answers: the log writes the rows at once), one shared by all its drops."""
        self._drop(served.name, reason, n)
        version = served.version
        slot = self._closed.get(version)
        if slot is None:
            slot = self._closed[version] = ShadowSlot(version)
            slot.fill(None)
        return slot

    def _drop(self, model: str, reason: str, n: int) -> None:
        counter = self._dropped.get((model, reason))
        if counter is None:
            counter = self._dropped[model, reason] = self.metrics.shadow_dropped.labels(
                model, reason
            )
        counter.inc(n)

    def start(self) -> None:
        """Start the worker thread."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="slipway-shadow", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop without waiting for the shadow version: queued work, and the call in progress
        if it does not finish within ``timeout`` (a candidate that sleeps), are dropped and
        counted (reason ``shutdown``), and their log rows are written without shadow answers."""
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self._abandon(left)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            running, self._running = self._running, []
        self._abandon(running)  # the worker, still in the call, will find its slots filled
        with self._cond:
            self._rows = 0

    def _abandon(self, jobs: Sequence[_Job]) -> None:
        for job in jobs:
            if job.slot.fill(None):
                self._drop(job.served.name, "shutdown", len(job.rows))

    def _take(self) -> list[_Job] | None:
        """The next merged call's work (None: stop); waits for a full batch or ``interval``."""
        interval = min(self.interval, self.max_age / 4)
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                wait = self._queue[0].queued_at + interval - time.monotonic()
                if self._rows < self.batch_rows and wait > 0:
                    self._cond.wait(wait)
                    continue
                stale = time.monotonic() - self.max_age
                queue = self._queue
                while queue and (queue[0].queued_at < stale or queue[0].slot.late):
                    self._rows -= len(queue.popleft().rows)  # its log rows are written
                if not queue:
                    continue
                first = queue.popleft()
                jobs, rows = [first], len(first.rows)
                while (
                    queue
                    and queue[0].served is first.served
                    and rows + len(queue[0].rows) <= self.batch_rows
                ):
                    job = queue.popleft()
                    if not job.slot.late:
                        jobs.append(job)
                        rows += len(job.rows)
                    else:
                        self._rows -= len(job.rows)
                self._running = jobs
                return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                self._score(jobs[0].served, jobs)
            except Exception:  # the worker must survive anything a shadow version does
                logger.exception("shadow scoring failed")
                for job in jobs:
                    job.slot.fill([{"error": "internal error"}] * len(job.rows))
            with self._cond:
                if self._running is jobs:
                    self._running = []
                    self._rows -= sum(len(job.rows) for job in jobs)

    def _score(self, served: Served, jobs: list[_Job]) -> None:
        """Score ``jobs`` for ``served``, timing the call for :meth:`submit` (a call that runs
        longer than ``max_age`` makes the version stalled)."""
        health = self._health.get(id(served))
        if health is None or health.served() is not served:
            health = self._health[id(served)] = _Health(served)
        health.call_started = started = time.monotonic()
        try:
            self._call(served, jobs, health)
        finally:
            now = time.monotonic()
            health.call_started = 0.0
            if now - started > self.max_age:
                if health.dropping is None:
                    logger.warning(
                        "shadow version %s:%s took %.1f s to score %d requests, longer than "
                        "the %.1f s its log rows wait: its work is dropped (reason stalled) "
                        "and one request is let through every %.1f s until it is faster",
                        served.name,
                        served.version,
                        now - started,
                        len(jobs),
                        self.max_age,
                        self.probe_interval,
                    )
                health.dropping = "stalled"
                health.probe_at = now + self.probe_interval
            elif health.dropping == "stalled":  # fast again; still failing, if it fails
                health.dropping = "failing" if health.streak >= _FAILING_STREAK else None

    def _call(self, served: Served, jobs: list[_Job], health: _Health) -> None:
        """One merged call when every row is clean, else each request on its own.

        The worker lets go of the GIL between steps (``time.sleep(0)``), so the event loop
        never waits long for it while the shadow works: its Python stretches stay short.
        """
        model = served.model
        started = time.perf_counter()
        names = served.names
        records = [r for job in jobs for r in job.records(names)]
        time.sleep(0)
        checked = model.contract.validate_clean(records)
        if checked is not None:
            time.sleep(0)
            failed: Exception | None = None
            try:
                predictions = model.infer(checked)
                time.sleep(0)
                outputs = None if predictions.warnings else predictions.records()
            except Exception as exc:
                outputs, failed = None, exc
            ms = (time.perf_counter() - started) * 1000
            if outputs is not None and len(outputs) == len(records):
                self._healthy(health)
                self.metrics.shadowed(served.name, served.version, "ok")[1].observe(ms / 1000)
                start = 0
                for job in jobs:
                    n = len(job.rows)
                    self._done(served, job, outputs[start : start + n], ms, "ok")
                    start += n
                return
            if failed is not None and health.streak >= _FAILING_STREAK:
                # A failing version (its every request failed alone, batch after batch): its
                # merged call's error stands for each request, without a call per request.
                error = f"{type(failed).__name__}: {failed}"[:500]
                self.metrics.shadowed(served.name, served.version, "error")[1].observe(ms / 1000)
                for job in jobs:
                    self._done(served, job, [{"error": error}] * len(job.rows), ms, "error")
                return
        outcomes = set()
        for job in jobs:
            time.sleep(0)
            outcomes.add(self._one(served, job))
        if outcomes != {"error"}:
            self._healthy(health)
            return
        health.streak += 1
        if health.streak >= _FAILING_STREAK and health.dropping is None:
            logger.warning(
                "shadow version %s:%s failed on every request of %d batches in a row: its "
                "work is dropped (reason failing) and one request is let through every %.1f s "
                "until it answers",
                served.name,
                served.version,
                health.streak,
                self.probe_interval,
            )
            health.dropping = "failing"
            health.probe_at = time.monotonic() + self.probe_interval

    def _healthy(self, health: _Health) -> None:
        """A call answered: the version is neither failing nor (if fast) stalled any more."""
        health.streak = 0
        if health.dropping == "failing":
            health.dropping = None

    def _one(self, served: Served, job: _Job) -> str:
        model = served.model
        started = time.perf_counter()
        try:
            checked = model.validate(job.records(served.names))
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
        self.metrics.shadowed(served.name, served.version, outcome)[1].observe(ms / 1000)
        self._done(served, job, outputs, ms, outcome)
        return outcome

    def _done(
        self, served: Served, job: _Job, outputs: list[dict[str, Any]], ms: float, outcome: str
    ) -> None:
        rounded = round(ms, 3)
        counter = self.metrics.shadowed(served.name, served.version, outcome)[0]
        # Counted as scored only when the log still waits for it (else it was counted late,
        # or shutdown): each row is counted once.
        if job.slot.fill([{**out, "latency_ms": rounded} for out in outputs]):
            counter.inc(len(outputs))
