"""The prediction log: every served prediction recorded off the request path, nothing lost silently.

Requests hand their predictions (an :class:`Entry`, or a :class:`Failure` for a refused
request) to :class:`PredictionLog`, a bounded in-memory queue that turns them into database
rows as they come, and return; a background thread writes them in batches (multi-row INSERTs
on SQLite, COPY on PostgreSQL, one transaction a batch) into the ``predictions`` table, and
refused requests into ``validation_failures``: the rows and the writes are
:class:`~slipway.store.predictions.LogTable`'s. When the queue is full new rows are dropped and
counted (``slipway_prediction_log_dropped_total``), never blocking a request. A request that a
shadow version also scores (see ``shadow.py``) waits in the queue for the shadow answers, for
at most ``shadow_wait`` seconds, and is then written once with or without them. A database
outage is retried with backoff while the queue holds; a batch the database refuses as data is
retried row by row so one bad row costs only itself. :meth:`PredictionLog.close` drains the
queue on graceful shutdown.

Prediction ids are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a per-process
sequence, then 62 random bits. They sort by time, and those from one process strictly increase.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slipway.serving.metrics import Metrics
from slipway.store import TRANSIENT, Store
from slipway.store.predictions import Entry, Failure, LogTable, Row, ShadowSlot

__all__ = ["Entry", "Failure", "IdGenerator", "PredictionLog", "ShadowSlot", "id_time"]

logger = logging.getLogger("slipway.serving.log")


class IdGenerator:
    """Time-sortable unique ids (UUIDv7 with a 12-bit sequence for order within a millisecond).

    ``clock`` gives Unix time in nanoseconds (tests pass a fake one).
    """

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ms = 0
        self._seq = 0

    def new(self, n: int) -> list[str]:
        """``n`` fresh ids, increasing."""
        rand = os.urandom(8 * n)
        out = []
        with self._lock:
            now = self._clock() // 1_000_000
            if now > self._ms:
                self._ms, self._seq = now, -1
            for i in range(n):
                self._seq += 1
                if self._seq > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                    self._ms, self._seq = self._ms + 1, 0
                low = int.from_bytes(rand[8 * i : 8 * i + 8]) & 0x3FFF_FFFF_FFFF_FFFF
                value = self._ms << 80 | 0x7 << 76 | self._seq << 64 | 0b10 << 62 | low
                h = f"{value:032x}"
                out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        return out


def id_time(prediction_id: str) -> float | None:
    """Unix time (seconds) a UUIDv7 prediction id was made at, or None if it is not one."""
    if len(prediction_id) != 36 or prediction_id[14] != "7":
        return None
    try:
        return int(prediction_id[:8] + prediction_id[9:13], 16) / 1000
    except ValueError:
        return None


@dataclass
class _Rows:
    """The rows of one queued Entry, ready for the database (see store/predictions.py); with a
    shadow slot, held until the slot is filled or ``deadline`` (monotonic) passes."""

    rows: list[Row]
    slot: ShadowSlot | None = None
    deadline: float = 0.0

    def __len__(self) -> int:
        return len(self.rows)


class PredictionLog:
    """A bounded queue of predictions and the thread that writes them in batches."""

    def __init__(
        self,
        store: Store,
        *,
        max_rows: int = 200_000,
        batch_rows: int = 2000,
        flush_seconds: float = 0.2,
        shadow_wait: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.max_rows, self.batch_rows, self.flush_seconds = max_rows, batch_rows, flush_seconds
        self.shadow_wait = shadow_wait
        self.metrics = metrics
        self.dropped = 0
        self.table = LogTable()
        self._queue: deque[_Rows | Failure] = deque()
        self._waiting: deque[_Rows] = deque()  # entries waiting for their shadow answers
        self._rows = 0  # rows in the queue, waiting, and in the batch being written
        # Rows of the waiting entries, kept as they come and go: the writer and every put()
        # read it, and summing a deque of thousands of entries there (a slow shadow keeps one
        # second of traffic waiting) made each request pay for the whole backlog.
        self._waiting_n = 0
        self._cond = threading.Condition()
        self._queued = 0  # items ever accepted; flush() waits for _written to reach it
        self._written = 0
        self._flush_now = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.died: str | None = None  # why the writer thread stopped, if it did
        self.database_error: str | None = None  # why the last write failed, while it retries

    @property
    def depth(self) -> int:
        """Rows waiting to be written."""
        return self._rows

    @property
    def alive(self) -> bool:
        """Whether the writer runs (True before it is started)."""
        return self.died is None

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self.died = None
            if self.metrics is not None:
                self.metrics.thread_alive.labels("prediction_log").set(1)
            self._thread = threading.Thread(
                target=self._guarded_run, name="slipway-log", daemon=True
            )
            self._thread.start()

    def put(self, item: Entry | Failure) -> bool:
        """Queue a request's predictions (or a refusal); False if the full queue dropped them.

        An Entry is turned into database rows here, on the caller's thread (see
        :class:`~slipway.store.predictions.LogTable`).
        """
        return self.put_many([item])[0]

    def put_many(self, items: Sequence[Entry | Failure]) -> list[bool]:
        """:meth:`put` for several requests at once (one lock); which ones were kept."""
        prepared: list[_Rows | Failure | None] = []
        for item in items:
            try:
                prepared.append(self._prepare(item) if isinstance(item, Entry) else item)
            except Exception:  # never fail a request that was answered: count it, say why
                logger.exception("prediction log: could not make rows of a request; dropped")
                self._drop(len(item), "unserializable")
                prepared.append(None)
        kept = []
        with self._cond:
            for queued in prepared:
                if queued is None:
                    kept.append(False)
                    continue
                n = len(queued)
                if self._rows + n > self.max_rows or self._stopping:
                    self._drop(n, "queue_full" if not self._stopping else "shutdown")
                    kept.append(False)
                    continue
                if isinstance(queued, _Rows) and queued.slot is not None:
                    if queued.slot.done:  # dropped at once (a full shadow queue): no wait
                        self._settle(queued)
                        self._queue.append(queued)
                    else:
                        self._waiting.append(queued)
                        self._waiting_n += n
                else:
                    self._queue.append(queued)
                self._rows += n
                self._queued += 1
                kept.append(True)
            if self._rows - self._waiting_n >= self.batch_rows:
                self._cond.notify_all()
        return kept

    def _prepare(self, entry: Entry) -> _Rows:
        rows = self.table.rows(entry)
        if entry.shadow is None:
            return _Rows(rows)
        return _Rows(rows, entry.shadow, time.monotonic() + self.shadow_wait)

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything queued so far now; True once it is in the database (an entry waiting
        for its shadow answers is written when they come, or after ``shadow_wait``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._flush_now = True
            self._cond.notify_all()
            while self._written < target:
                left = deadline - time.monotonic()
                if left <= 0 or self.died or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue (graceful shutdown) and stop; rows left unwritten count as dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("prediction log: could not drain within %.0f s", timeout)
        with self._cond:
            left = sum(len(i) for i in self._queue) + sum(len(i) for i in self._waiting)
            self._queue.clear()
            self._waiting.clear()
            self._waiting_n = 0
            if left:
                self._drop(left, "shutdown")
        self._thread = None

    # -- writer thread ---------------------------------------------------------------------

    def _guarded_run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            # Answered predictions would silently stop being logged: say so loudly, stop being
            # ready, and wake anyone waiting in flush().
            self.died = f"{type(exc).__name__}: {exc}"
            logger.critical(
                "the prediction-log writer stopped (%s); this worker is not ready",
                self.died,
                exc_info=True,
            )
            if self.metrics is not None:
                self.metrics.thread_alive.labels("prediction_log").set(0)
            with self._cond:
                self._cond.notify_all()
            # Not re-raised: the traceback is in the log above, and readiness reports it.

    def _run(self) -> None:
        while True:
            with self._cond:
                start = time.monotonic()
                while not (
                    self._stopping
                    or self._flush_now
                    or self._rows - self._waiting_n >= self.batch_rows
                    or (
                        (self._queue or self._waiting)
                        and time.monotonic() - start >= self.flush_seconds
                    )
                ):
                    self._cond.wait(self.flush_seconds)
                self._release(everything=self._stopping)
                if self._stopping and not self._queue:
                    return
                self._flush_now = False
                batch: list[_Rows | Failure] = []
                rows = 0
                while self._queue and (rows < self.batch_rows or not batch):
                    item = self._queue.popleft()
                    batch.append(item)
                    rows += len(item)
            if batch:
                self._write_with_retry(batch)
            with self._cond:
                self._rows -= rows
                self._written += len(batch)
                self._cond.notify_all()
            if self.metrics is not None:
                self.metrics.log_queue_depth.set(self._rows)

    def _release(self, everything: bool = False) -> None:
        """Move waiting entries whose shadow answers came (or whose time is up) to the queue,
        with the answers written into their rows (called with the lock held)."""
        if not self._waiting:
            return
        now = time.monotonic()
        still: deque[_Rows] = deque()
        for item in self._waiting:
            slot = item.slot
            assert slot is not None
            if not (slot.done or everything or now >= item.deadline):
                still.append(item)
                continue
            self._waiting_n -= len(item)
            self._settle(item)
            self._queue.append(item)
        self._waiting = still

    def _settle(self, item: _Rows) -> None:
        """Write the shadow answers into the rows of ``item`` (or count them late), once."""
        slot = item.slot
        assert slot is not None
        if slot.done:
            outputs = slot.outputs
            if outputs is not None and len(outputs) == len(item.rows):
                item.rows = self.table.with_shadow(item.rows, outputs)
        else:
            slot.late = True  # the scorer counts it: its answer, if any, comes too late
            if self.metrics is not None:
                model = item.rows[0][2] if item.rows else ""
                self.metrics.shadow_dropped.labels(model, "late").inc(len(item.rows))
        item.slot = None

    def _write_with_retry(self, batch: list[_Rows | Failure]) -> None:
        delay = 0.25
        while True:
            try:
                self._write(batch)
                self.database_error = None
                return
            except TRANSIENT as exc:
                self.database_error = type(exc).__name__
                if self._stopping and delay > 4:
                    self._drop(sum(len(i) for i in batch), "database_unavailable")
                    logger.error("prediction log: giving up on a batch at shutdown: %s", exc)
                    return
                logger.warning("prediction log: database unavailable, retrying: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # a refused batch must not kill the writer thread
                logger.warning("prediction log: batch refused (%s); writing row by row", exc)
                self._write_one_by_one(batch)
                return

    def _write(self, batch: Sequence[_Rows | Failure]) -> None:
        rows: list[Row] = []
        failures: list[Failure] = []
        for item in batch:
            if isinstance(item, _Rows):
                rows.extend(item.rows)
            else:
                failures.append(item)
        self.table.write(self.store, rows, failures)
        if rows and self.metrics is not None:
            self.metrics.log_written.inc(len(rows))

    def _write_one_by_one(self, batch: list[_Rows | Failure]) -> None:
        for item in batch:
            singles: list[_Rows | Failure] = (
                [_Rows([row]) for row in item.rows] if isinstance(item, _Rows) else [item]
            )
            for single in singles:
                try:
                    self._write([single])
                except Exception as exc:
                    self._drop(len(single), "refused")
                    logger.error("prediction log: row dropped, the database refused it: %s", exc)

    def _drop(self, n: int, reason: str) -> None:
        with self._cond:
            self.dropped += n
        if self.metrics is not None:
            self.metrics.log_dropped.labels(reason).inc(n)
        if reason == "queue_full" and self.dropped == n:
            logger.error(
                "prediction log: queue full (%d rows); dropping predictions and counting them "
                "in slipway_prediction_log_dropped_total",
                self.max_rows,
            )
