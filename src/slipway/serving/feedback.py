"""Ground truth that arrives after the prediction, stored once per prediction id.

A prediction may still sit in a log queue when its feedback arrives (this worker's, or another
worker's), so before calling an id unknown the desk flushes this worker's log and, for ids
minted in the last ``settle_seconds`` (their UUIDv7 says when), waits for the other workers'
writers once and looks again.

Each label is compared with the classes of the version that made the prediction (see
``labels.py``): unambiguous numeric forms are stored as the class (``1`` for a class ``1.0``),
and the rest are stored as sent and listed in the response under ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slipway.clock import utcnow
from slipway.exceptions import SlipwayError
from slipway.serving.labels import match_label
from slipway.serving.log import PredictionLog, id_time
from slipway.store import Store
from slipway.store.predictions import (
    add_feedback,
    latest_for_units,
    logged_ids,
    logged_versions,
)
from slipway.versions import ModelVersion


@dataclass(frozen=True)
class UnitRef:
    """Feedback addressed by the caller's own key instead of a prediction id: it applies to the
    latest logged prediction of ``model`` for ``unit_id`` when the feedback arrives."""

    model: str
    unit_id: str


@dataclass
class FeedbackResult:
    """How a feedback request was taken: stored, already stored before, or for unknown ids."""

    accepted: int = 0
    duplicates: int = 0
    unknown: list[str] = field(default_factory=list)
    normalized: int = 0
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    unknown_units: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The response body."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unknown": self.unknown,
            "normalized": self.normalized,
            "unmatched": self.unmatched,
            "unknown_units": self.unknown_units,
        }


class FeedbackDesk:
    """Stores labels for logged predictions, idempotently."""

    def __init__(
        self,
        store: Store,
        log: PredictionLog,
        settle_seconds: float = 1.5,
        version: Callable[[str, int], ModelVersion] | None = None,
    ) -> None:
        self.store, self.log, self.settle_seconds = store, log, settle_seconds
        self.version = version  # (model, version) -> ModelVersion; None: labels not compared
        self._classes: dict[tuple[str, int], tuple[bool, list[Any] | None]] = {}

    def record(self, items: Sequence[tuple[str | UnitRef, Any]]) -> FeedbackResult:
        """Store each ``(prediction_id, label)`` whose prediction is logged and has no label yet
        (a :class:`UnitRef` in place of the id names the unit's latest prediction)."""
        result = FeedbackResult()
        items = self._by_unit(items, result)
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
        labels = self._match(labels, result)
        stored = add_feedback(self.store, labels, utcnow())
        result.accepted = stored
        result.duplicates += len(labels) - stored
        return result

    def _by_unit(
        self, items: Sequence[tuple[str | UnitRef, Any]], result: FeedbackResult
    ) -> list[tuple[str, Any]]:
        """Items with each UnitRef replaced by its unit's latest prediction id; units with no
        logged prediction go to ``unknown_units``."""
        units: dict[str, list[str]] = {}
        for key, _ in items:
            if isinstance(key, UnitRef):
                units.setdefault(key.model, []).append(key.unit_id)
        if not units:
            return [(key, label) for key, label in items if isinstance(key, str)]
        self.log.flush()
        found = {model: latest_for_units(self.store, model, ids) for model, ids in units.items()}
        out: list[tuple[str, Any]] = []
        for key, label in items:
            if isinstance(key, str):
                out.append((key, label))
            elif (pid := found[key.model].get(key.unit_id)) is not None:
                out.append((pid, label))
            else:
                result.unknown_units.append({"model": key.model, "unit_id": key.unit_id})
        return out

    def _match(
        self, labels: list[tuple[str, Any]], result: FeedbackResult
    ) -> list[tuple[str, Any]]:
        """Labels as the version's classes where unambiguous; the rest noted as unmatched."""
        if self.version is None or not labels:
            return labels
        made_by = logged_versions(self.store, [pid for pid, _ in labels])
        out = []
        for pid, label in labels:
            checked, classes = self._classes_of(made_by.get(pid))
            if not checked:
                out.append((pid, label))
                continue
            stored, matches = match_label(label, classes)
            if not matches:
                name, number = made_by[pid]
                expected = classes if classes is not None else "a number"
                result.unmatched.append(
                    {"prediction_id": pid, "label": label, "model": f"{name}:{number}",
                     "expected": expected}
                )  # fmt: skip
            elif stored != label or type(stored) is not type(label):
                result.normalized += 1
            out.append((pid, stored))
        return out

    def _classes_of(self, key: tuple[str, int] | None) -> tuple[bool, list[Any] | None]:
        """(whether labels can be checked, the classes or None for a regressor), cached."""
        if key is None or self.version is None:
            return False, None
        if key not in self._classes:
            try:
                mv = self.version(*key)
            except SlipwayError:  # a deleted version: store as sent
                return False, None
            self._classes[key] = (True, None if mv.task == "regression" else mv.classes)
        return self._classes[key]
