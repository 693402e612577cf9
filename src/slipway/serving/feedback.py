"""Ground truth that arrives after the prediction, stored once per prediction id.

A prediction may still sit in a log queue when its feedback arrives (this worker's, or another
worker's), so before calling an id unknown the desk flushes this worker's log and, for ids
minted in the last ``settle_seconds`` (their UUIDv7 says when), waits for the other workers'
writers once and looks again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slipway.clock import utcnow
from slipway.serving.log import PredictionLog, id_time
from slipway.store import Store
from slipway.store.predictions import add_feedback, logged_ids


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
    """Stores labels for logged predictions, idempotently."""

    def __init__(self, store: Store, log: PredictionLog, settle_seconds: float = 1.5) -> None:
        self.store, self.log, self.settle_seconds = store, log, settle_seconds

    def record(self, items: Sequence[tuple[str, Any]]) -> FeedbackResult:
        """Store each ``(prediction_id, label)`` whose prediction is logged and has no label yet."""
        result = FeedbackResult()
        first: dict[str, Any] = {}
        for pid, label in items:
            if pid in first:
                result.duplicates += 1  # the same id twice in one request: the first wins
            else:
                first[pid] = label
        self.log.flush()
        known = logged_ids(self.store, first)
        now = time.time()
        ages = {pid: now - t for pid in first if pid not in known and (t := id_time(pid))}
        recent = [pid for pid, age in ages.items() if age < self.settle_seconds]
        if recent:
            youngest = max(0.0, min(ages[pid] for pid in recent))
            time.sleep(self.settle_seconds - youngest)
            known |= logged_ids(self.store, recent)
        result.unknown = [pid for pid in first if pid not in known]
        labels = [(pid, label) for pid, label in first.items() if pid in known]
        stored = add_feedback(self.store, labels, utcnow())
        result.accepted = stored
        result.duplicates += len(labels) - stored
        return result
