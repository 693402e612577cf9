"""Ground truth that arrives after the prediction, stored once per prediction id.

A prediction may still sit in a log queue when its feedback arrives (this worker's, or another
worker's), so before calling an id unknown the desk flushes this worker's log and, for ids
minted in the last ``settle_seconds`` (their UUIDv7 says when), waits for the other workers'
writers once and looks again.

The ids come from the client, so that wait must cost the server nothing: it is an
``asyncio.sleep`` on the event loop (no thread is held) during which the request gives its
concurrency slot back (:meth:`ConcurrencyCap.lent`), and ids dated in the future (beyond a
small clock skew) are unknown at once. A forged id can make its own request slower, never
anyone else's. Database work runs in the thread pool, one short query at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from slipway.clock import utcnow
from slipway.serving.limits import ConcurrencyCap
from slipway.serving.log import PredictionLog, id_time
from slipway.store import Store
from slipway.store.predictions import add_feedback, logged_ids

# Workers on other hosts mint ids by their own clocks: an id up to this far in the future is
# still worth waiting for; anything later was not made by a server.
CLOCK_SKEW_SECONDS = 0.5
_FLUSH_SECONDS = 2.0  # longest a request waits for this worker's own writer


@dataclass
class FeedbackResult:
    """How a feedback request was taken: stored, already stored before, or for unknown ids."""

    accepted: int = 0
    duplicates: int = 0
    unknown: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The response body."""
        return {"accepted": self.accepted, "duplicates": self.duplicates, "unknown": self.unknown}


class FeedbackDesk:
    """Stores labels for logged predictions, idempotently.

    ``cap`` is the server's concurrency cap, whose slot a request gives back while it waits.
    """

    def __init__(
        self,
        store: Store,
        log: PredictionLog,
        settle_seconds: float = 1.5,
        cap: ConcurrencyCap | None = None,
    ) -> None:
        self.store, self.log, self.settle_seconds, self.cap = store, log, settle_seconds, cap

    async def record(self, items: Sequence[tuple[str, Any]]) -> FeedbackResult:
        """Store each ``(prediction_id, label)`` whose prediction is logged and has no label yet.

        Call it on the event loop: it waits there, and sends database work to the thread pool.
        """
        result = FeedbackResult()
        first: dict[str, Any] = {}
        for pid, label in items:
            if pid in first:
                result.duplicates += 1  # the same id twice in one request: the first wins
            else:
                first[pid] = label
        known = await run_in_threadpool(self._flush_and_look, first)
        recent, wait = self._worth_waiting_for([pid for pid in first if pid not in known])
        if recent:
            with self.cap.lent() if self.cap is not None else nullcontext():
                await asyncio.sleep(wait)
            known |= await run_in_threadpool(logged_ids, self.store, recent)
        result.unknown = [pid for pid in first if pid not in known]
        labels = [(pid, label) for pid, label in first.items() if pid in known]
        stored = await run_in_threadpool(add_feedback, self.store, labels, utcnow())
        result.accepted = stored
        result.duplicates += len(labels) - stored
        return result

    def _flush_and_look(self, ids: Iterable[str]) -> set[str]:
        # While the writer is failing, a flush would only wait for it in vain; the lookup then
        # fails on its own and the request is answered 503 (errors.py).
        if self.log.database_error is None:
            self.log.flush(timeout=_FLUSH_SECONDS)
        return logged_ids(self.store, ids)

    def _worth_waiting_for(self, unknown: Sequence[str]) -> tuple[list[str], float]:
        """The unknown ids another worker may still be about to log, and how long to wait."""
        now = time.time()
        ages = {pid: now - t for pid in unknown if (t := id_time(pid)) is not None}
        recent = [
            pid for pid, age in ages.items() if -CLOCK_SKEW_SECONDS <= age < self.settle_seconds
        ]
        if not recent:
            return [], 0.0
        youngest = max(0.0, min(ages[pid] for pid in recent))
        return recent, self.settle_seconds - youngest
