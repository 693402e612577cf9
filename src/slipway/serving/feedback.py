"""Ground truth that arrives after the prediction, stored once per prediction id: true labels,
and business outcomes (a conversion, revenue) once per prediction id and outcome name.

A prediction may still sit in a log queue when its feedback arrives (this worker's, or another
worker's), so before calling an id unknown the desk flushes this worker's log and, for ids
minted in the last ``settle_seconds`` (their UUIDv7 says when), waits for the other workers'
writers once and looks again.

The ids come from the client, so that wait must cost the server nothing: it is an
``asyncio.sleep`` on the event loop (no thread is held) during which the request gives its
concurrency slot back (:meth:`ConcurrencyCap.lent`), and ids dated in the future (beyond a
small clock skew) are unknown at once. A forged id can make its own request slower, never
anyone else's. Database work runs in the thread pool, one short query at a time.

Each label is compared with the classes of the version that made the prediction (see
``labels.py``): unambiguous numeric forms are stored as the class (``1`` for a class ``1.0``),
and the rest are stored as sent and listed in the response under ``unmatched``. An item may
name its prediction by the caller's own key (:class:`UnitRef`) instead of its id, or name a
batch-scored row by its key (:class:`BatchRef`): that label is stored once per row of the run
(``batch_feedback``), and a key no batch run stored in the database is listed under
``unknown_keys`` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from slipway.clock import utcnow
from slipway.exceptions import SlipwayError
from slipway.serving.labels import match_label
from slipway.serving.limits import ConcurrencyCap
from slipway.serving.log import PredictionLog, id_time
from slipway.store import Store
from slipway.store.batchfeedback import (
    BatchRow,
    KeyRun,
    add_batch_feedback,
    key_runs,
    rejected_keys,
    scored_rows,
)
from slipway.store.experiments import record_outcomes
from slipway.store.predictions import (
    add_feedback,
    latest_for_units,
    logged_ids,
    logged_versions,
)
from slipway.versions import ModelVersion

# Workers on other hosts mint ids by their own clocks: an id up to this far in the future is
# still worth waiting for; anything later was not made by a server.
CLOCK_SKEW_SECONDS = 0.5
_FLUSH_SECONDS = 2.0  # longest a request waits for this worker's own writer


@dataclass(frozen=True)
class UnitRef:
    """Feedback addressed by the caller's own key instead of a prediction id: it applies to the
    latest logged prediction of ``model`` for ``unit_id`` when the feedback arrives."""

    model: str
    unit_id: str


@dataclass(frozen=True)
class BatchRef:
    """Feedback addressed to a batch-scored row by its key (``slipway batch --key-column``):
    the row of run ``run_id``, or of the latest run of ``model`` that scored ``key``."""

    model: str
    key: str
    run_id: str | None = None


FeedbackKey = str | UnitRef | BatchRef


@dataclass
class FeedbackResult:
    """How a feedback request was taken: stored, already stored before, or for unknown ids."""

    accepted: int = 0
    duplicates: int = 0
    unknown: list[str] = field(default_factory=list)
    normalized: int = 0
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    unknown_units: list[dict[str, str]] = field(default_factory=list)
    unknown_keys: list[dict[str, str | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The response body."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unknown": self.unknown,
            "normalized": self.normalized,
            "unmatched": self.unmatched,
            "unknown_units": self.unknown_units,
            "unknown_keys": self.unknown_keys,
        }


class FeedbackDesk:
    """Stores labels and outcomes for logged predictions, idempotently.

    ``cap`` is the server's concurrency cap, whose slot a request gives back while it waits.
    ``version`` looks up a ``(model, version)`` for its classes; without it labels are stored
    as sent, unchecked.
    """

    def __init__(
        self,
        store: Store,
        log: PredictionLog,
        settle_seconds: float = 1.5,
        cap: ConcurrencyCap | None = None,
        version: Callable[[str, int], ModelVersion] | None = None,
    ) -> None:
        self.store, self.log, self.settle_seconds, self.cap = store, log, settle_seconds, cap
        self.version = version
        self._classes: dict[tuple[str, int], tuple[bool, list[Any] | None]] = {}

    async def record(
        self,
        items: Sequence[tuple[FeedbackKey, Any]],
        outcomes: Sequence[tuple[str, str, float]] = (),
    ) -> FeedbackResult:
        """Store each ``(prediction_id, label)`` whose prediction is logged and has no label yet
        (a :class:`UnitRef` in place of the id names the unit's latest prediction; a
        :class:`BatchRef` names a batch-scored row), and each ``(prediction_id, outcome,
        value)`` whose prediction has no such outcome yet.

        Call it on the event loop: it waits there, and sends database work to the thread pool.
        """
        result = FeedbackResult()
        batch = [(key, label) for key, label in items if isinstance(key, BatchRef)]
        logged = [(key, label) for key, label in items if not isinstance(key, BatchRef)]
        batch_stored, batch_duplicates = 0, 0
        if batch:
            batch_stored, batch_duplicates = await run_in_threadpool(
                self._record_batch, batch, result
            )
        by_id = await run_in_threadpool(self._by_unit, logged, result)
        first: dict[str, Any] = {}
        for pid, label in by_id:
            if pid in first:
                result.duplicates += 1  # the same id twice in one request: the first wins
            else:
                first[pid] = label
        named: dict[tuple[str, str], float] = {}
        for pid, name, value in outcomes:
            if (pid, name) in named:
                result.duplicates += 1
            else:
                named[(pid, name)] = value
        wanted = list({**dict.fromkeys(first), **dict.fromkeys(pid for pid, _ in named)})
        known = await run_in_threadpool(self._flush_and_look, wanted)
        recent, wait = self._worth_waiting_for([pid for pid in wanted if pid not in known])
        if recent:
            with self.cap.lent() if self.cap is not None else nullcontext():
                await asyncio.sleep(wait)
            known |= await run_in_threadpool(logged_ids, self.store, recent)
        result.unknown = [pid for pid in wanted if pid not in known]
        labels = [(pid, label) for pid, label in first.items() if pid in known]
        labels = await run_in_threadpool(self._match, labels, result)
        stored = await run_in_threadpool(add_feedback, self.store, labels, utcnow())
        kept = [(pid, name, value) for (pid, name), value in named.items() if pid in known]
        stored_outcomes = await run_in_threadpool(record_outcomes, self.store, kept)
        result.accepted = stored + stored_outcomes + batch_stored
        result.duplicates += len(labels) - stored + len(kept) - stored_outcomes + batch_duplicates
        return result

    def _record_batch(
        self, items: Sequence[tuple[BatchRef, Any]], result: FeedbackResult
    ) -> tuple[int, int]:
        """Store the labels of batch-scored rows, once per row; ``(stored, duplicates)``.
        Keys no run stored in the database go to ``unknown_keys`` with the reason."""
        wanted: dict[tuple[str, str | None], list[str]] = {}
        for ref, _ in items:
            wanted.setdefault((ref.model, ref.run_id), []).append(ref.key)
        found = {
            (model, run): scored_rows(self.store, model, keys, run)
            for (model, run), keys in wanted.items()
        }
        missing = {
            where: [key for key in keys if key not in found[where]]
            for where, keys in wanted.items()
        }
        rejected = {
            where: rejected_keys(self.store, where[0], keys, where[1])
            for where, keys in missing.items()
            if keys
        }
        runs: dict[tuple[str, str | None], list[KeyRun]] = {}
        first: dict[BatchRow, Any] = {}
        duplicates = 0
        for ref, label in items:
            where = (ref.model, ref.run_id)
            row = found[where].get(ref.key)
            if row is None:
                if where not in runs:
                    runs[where] = key_runs(self.store, ref.model, ref.run_id)
                result.unknown_keys.append(
                    {"model": ref.model, "batch_key": ref.key, "run_id": ref.run_id,
                     "reason": _why_unknown(ref, runs[where], rejected[where].get(ref.key))}
                )  # fmt: skip
            elif row in first:
                duplicates += 1  # the same row twice in one request: the first wins
            else:
                first[row] = label
        labels = [
            (row, self._check(label, (row.model, row.version), result,
                              {"batch_key": row.key, "run_id": row.run_id}))
            for row, label in first.items()
        ]  # fmt: skip
        stored = add_batch_feedback(self.store, labels, utcnow())
        return stored, duplicates + len(labels) - stored

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
        if self.log.database_error is None:
            self.log.flush(timeout=_FLUSH_SECONDS)
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
        return [
            (pid, self._check(label, made_by.get(pid), result, {"prediction_id": pid}))
            for pid, label in labels
        ]

    def _check(
        self,
        label: Any,
        made_by: tuple[str, int] | None,
        result: FeedbackResult,
        named: dict[str, Any],
    ) -> Any:
        """The label to store: the version's class where unambiguous; else the label as sent,
        listed under ``unmatched`` after ``named`` (how the item named its prediction)."""
        checked, classes = self._classes_of(made_by)
        if not checked or made_by is None:
            return label
        stored, matches = match_label(label, classes)
        if not matches:
            expected = classes if classes is not None else "a number"
            result.unmatched.append(
                {**named, "label": label, "model": f"{made_by[0]}:{made_by[1]}",
                 "expected": expected}
            )  # fmt: skip
        elif stored != label or type(stored) is not type(label):
            result.normalized += 1
        return stored

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


def _why_unknown(ref: BatchRef, runs: Sequence[KeyRun], rejected_by: str | None) -> str:
    """Why no stored row of a batch run answers ``ref``, with the way out (``rejected_by``:
    the run that rejected the key's row, if one did)."""
    name = f"model {ref.model!r}"
    if rejected_by is not None:
        return (
            f"batch run {rejected_by!r} rejected this row (see `slipway batch runs show "
            f"{rejected_by}`), so it has no prediction to label"
        )
    parquet = [r for r in runs if r.output != "db"]
    if ref.run_id is not None:
        if not runs:
            return (
                f"{name} has no batch run {ref.run_id!r}; check the run id "
                "(slipway batch runs list)"
            )
        if parquet:
            where = parquet[0].path or "a Parquet file"
            return (
                f"batch run {ref.run_id!r} wrote its predictions to {where}, not to the "
                "database, so its keys are not recorded; score with --output db to send "
                "feedback by key"
            )
        return f"batch run {ref.run_id!r} of {name} stored no row with this key"
    if not runs:
        return (
            f"{name} has no batch run; score with "
            f"`slipway batch {ref.model} INPUT --key-column COL`"
        )
    if len(parquet) == len(runs):
        return (
            f"every batch run of {name} wrote Parquet, not the database, so no key is "
            "recorded; score with --output db to send feedback by key"
        )
    return f"no batch run of {name} stored a row with this key in the database"
